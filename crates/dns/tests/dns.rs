//! skiff-dns against a real, in-process Skiff API server, queried over UDP
//! and TCP on the wire, with a tiny upstream server standing in for the
//! host's resolvers so forwarding works without internet.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use hickory_proto::op::{Message, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use k8s_openapi::api::core::v1::{Namespace, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::time::Instant;

const NS: &str = "dns-test";

/// Sends one query over UDP (or TCP) and decodes the reply.
async fn ask(server: SocketAddr, name: &str, rtype: RecordType, tcp: bool) -> Message {
    let mut query = Message::query();
    query.metadata.recursion_desired = true;
    query.add_query(Query::query(Name::from_ascii(name).unwrap(), rtype));
    let bytes = query.to_vec().unwrap();
    let reply = if tcp {
        let mut stream = TcpStream::connect(server).await.unwrap();
        let mut framed = (bytes.len() as u16).to_be_bytes().to_vec();
        framed.extend_from_slice(&bytes);
        stream.write_all(&framed).await.unwrap();
        let len = stream.read_u16().await.unwrap();
        let mut reply = vec![0u8; len.into()];
        stream.read_exact(&mut reply).await.unwrap();
        reply
    } else {
        let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        socket.send_to(&bytes, server).await.unwrap();
        let mut buf = vec![0u8; 65535];
        let (n, _) = tokio::time::timeout(Duration::from_secs(5), socket.recv_from(&mut buf))
            .await
            .expect("a UDP reply within 5s")
            .unwrap();
        buf.truncate(n);
        buf
    };
    let message = Message::from_vec(&reply).unwrap();
    assert_eq!(message.metadata.id, query.metadata.id);
    message
}

fn ips(m: &Message) -> Vec<IpAddr> {
    let mut ips: Vec<IpAddr> = m
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(IpAddr::V4(a.0)),
            RData::AAAA(a) => Some(IpAddr::V6(a.0)),
            _ => None,
        })
        .collect();
    ips.sort();
    ips
}

fn targets(records: &[Record]) -> Vec<String> {
    let mut names: Vec<String> = records
        .iter()
        .filter_map(|r| match &r.data {
            RData::CNAME(n) => Some(n.0.to_ascii()),
            RData::PTR(n) => Some(n.0.to_ascii()),
            RData::SRV(s) => Some(format!("{} {}", s.port, s.target.to_ascii())),
            _ => None,
        })
        .collect();
    names.sort();
    names
}

/// The stand-in upstream's reply: every A question gets 192.0.2.53.
fn upstream_reply(packet: &[u8]) -> Vec<u8> {
    let request = Message::from_vec(packet).unwrap();
    let mut reply = Message::response(request.metadata.id, request.metadata.op_code);
    reply.metadata.recursion_available = true;
    reply.add_queries(request.queries.clone());
    for q in &request.queries {
        if q.query_type() == RecordType::A {
            reply.add_answer(Record::from_rdata(
                q.name().clone(),
                60,
                RData::A("192.0.2.53".parse::<std::net::Ipv4Addr>().unwrap().into()),
            ));
        }
    }
    reply.to_vec().unwrap()
}

/// A stand-in upstream resolver on UDP and TCP.
async fn upstream() -> SocketAddr {
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let address = socket.local_addr().unwrap();
    let listener = tokio::net::TcpListener::bind(address).await.unwrap();
    tokio::spawn(async move {
        let mut buf = vec![0u8; 4096];
        loop {
            let (n, peer) = socket.recv_from(&mut buf).await.unwrap();
            socket
                .send_to(&upstream_reply(&buf[..n]), peer)
                .await
                .unwrap();
        }
    });
    tokio::spawn(async move {
        loop {
            let (mut stream, _) = listener.accept().await.unwrap();
            let len = stream.read_u16().await.unwrap();
            let mut packet = vec![0u8; len.into()];
            stream.read_exact(&mut packet).await.unwrap();
            let reply = upstream_reply(&packet);
            let mut framed = (reply.len() as u16).to_be_bytes().to_vec();
            framed.extend_from_slice(&reply);
            stream.write_all(&framed).await.unwrap();
        }
    });
    address
}

async fn http_status(address: SocketAddr, path: &str) -> u16 {
    let mut stream = TcpStream::connect(address).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    response[9..12].parse().unwrap()
}

async fn http_body(address: SocketAddr, path: &str) -> String {
    let mut stream = TcpStream::connect(address).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    response
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_dns_serves_the_specification_records_from_watches() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let dir = tempfile::tempdir().unwrap();
    let apiserver = skiff_apiserver::start(skiff_apiserver::Config {
        data_dir: dir.path().join("apiserver"),
        secure_port: 0,
        bind_address: "127.0.0.1".parse().unwrap(),
        ..Default::default()
    })
    .await
    .expect("the API server starts");
    let kubeconfig = Kubeconfig::read_from(&apiserver.admin_kubeconfig).unwrap();
    let kube = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .unwrap();
    let client = kube::Client::try_from(kube.clone()).unwrap();

    let resolv_conf = dir.path().join("resolv.conf");
    std::fs::write(&resolv_conf, format!("nameserver {}\n", upstream().await)).unwrap();
    let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let dns = skiff_dns::start(skiff_dns::Config {
        dns_address: any,
        health_address: Some(any),
        ready_address: Some(any),
        metrics_address: Some(any),
        resolv_conf,
        ..skiff_dns::Config::new(kube)
    })
    .await
    .expect("skiff-dns starts");
    let server = dns.bound.dns;
    assert_eq!(http_status(dns.bound.health.unwrap(), "/health").await, 200);

    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": NS}})).unwrap(),
        )
        .await
        .unwrap();
    let services: Api<Service> = Api::namespaced(client.clone(), NS);
    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), NS);
    let create = |v: serde_json::Value| serde_json::from_value::<Service>(v).unwrap();
    let web = services
        .create(
            &PostParams::default(),
            &create(json!({
                "metadata": {"name": "web"},
                "spec": {"ports": [{"name": "http", "port": 80, "protocol": "TCP"}]},
            })),
        )
        .await
        .unwrap();
    let web_ip: IpAddr = web
        .spec
        .unwrap()
        .cluster_ip
        .expect("the API server allocates a ClusterIP")
        .parse()
        .unwrap();
    services
        .create(
            &PostParams::default(),
            &create(json!({
                "metadata": {"name": "db"},
                "spec": {"clusterIP": "None", "ports": [{"name": "pg", "port": 5432}]},
            })),
        )
        .await
        .unwrap();
    services
        .create(
            &PostParams::default(),
            &create(json!({
                "metadata": {"name": "ext"},
                "spec": {"type": "ExternalName", "externalName": "db.example.test"},
            })),
        )
        .await
        .unwrap();
    let slice = |ready3: bool| {
        serde_json::from_value::<EndpointSlice>(json!({
            "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": "db-1", "labels": {"kubernetes.io/service-name": "db"}},
            "addressType": "IPv4",
            "ports": [{"name": "pg", "port": 5432, "protocol": "TCP"}],
            "endpoints": [
                {"addresses": ["10.244.0.5"], "hostname": "db-0", "conditions": {"ready": true}},
                {"addresses": ["10.244.0.6"], "conditions": {"ready": true}},
                {"addresses": ["10.244.0.7"], "conditions": {"ready": ready3}},
            ],
        }))
        .unwrap()
    };
    slices
        .create(&PostParams::default(), &slice(false))
        .await
        .unwrap();

    let ready = dns.bound.ready.unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while http_status(ready, "/ready").await != 200 {
        assert!(Instant::now() < deadline, "/ready never turned 200");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Wait until the last object created is visible.
    let deadline = Instant::now() + Duration::from_secs(10);
    while ips(&ask(
        server,
        "db.dns-test.svc.cluster.local.",
        RecordType::A,
        false,
    )
    .await)
    .is_empty()
    {
        assert!(
            Instant::now() < deadline,
            "the headless service never appeared"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    for tcp in [false, true] {
        let m = ask(
            server,
            "web.dns-test.svc.cluster.local.",
            RecordType::A,
            tcp,
        )
        .await;
        assert_eq!(ips(&m), vec![web_ip], "service A over tcp={tcp}");
        assert!(m.metadata.authoritative);
        assert_eq!(m.answers[0].ttl, 30);

        let m = ask(server, "db.dns-test.svc.cluster.local.", RecordType::A, tcp).await;
        assert_eq!(
            ips(&m),
            vec![
                "10.244.0.5".parse::<IpAddr>().unwrap(),
                "10.244.0.6".parse().unwrap()
            ],
            "headless A set over tcp={tcp}"
        );
        let m = ask(
            server,
            "db-0.db.dns-test.svc.cluster.local.",
            RecordType::A,
            tcp,
        )
        .await;
        assert_eq!(ips(&m), vec!["10.244.0.5".parse::<IpAddr>().unwrap()]);

        let m = ask(
            server,
            "_http._tcp.web.dns-test.svc.cluster.local.",
            RecordType::SRV,
            tcp,
        )
        .await;
        assert_eq!(
            targets(&m.answers),
            vec!["80 web.dns-test.svc.cluster.local."]
        );
        let m = ask(
            server,
            "_pg._tcp.db.dns-test.svc.cluster.local.",
            RecordType::SRV,
            tcp,
        )
        .await;
        assert_eq!(
            targets(&m.answers),
            vec![
                "5432 10-244-0-6.db.dns-test.svc.cluster.local.",
                "5432 db-0.db.dns-test.svc.cluster.local.",
            ]
        );

        let reverse = match web_ip {
            IpAddr::V4(v4) => {
                let o = v4.octets();
                format!("{}.{}.{}.{}.in-addr.arpa.", o[3], o[2], o[1], o[0])
            }
            IpAddr::V6(_) => unreachable!("the default service range is IPv4"),
        };
        let m = ask(server, &reverse, RecordType::PTR, tcp).await;
        assert_eq!(targets(&m.answers), vec!["web.dns-test.svc.cluster.local."]);
        let m = ask(server, "5.0.244.10.in-addr.arpa.", RecordType::PTR, tcp).await;
        assert_eq!(
            targets(&m.answers),
            vec!["db-0.db.dns-test.svc.cluster.local."]
        );

        // ExternalName: the CNAME, and its target resolved upstream.
        let m = ask(
            server,
            "ext.dns-test.svc.cluster.local.",
            RecordType::A,
            tcp,
        )
        .await;
        assert_eq!(targets(&m.answers), vec!["db.example.test."]);
        assert_eq!(ips(&m), vec!["192.0.2.53".parse::<IpAddr>().unwrap()]);

        let m = ask(
            server,
            "10-244-3-4.dns-test.pod.cluster.local.",
            RecordType::A,
            tcp,
        )
        .await;
        assert_eq!(ips(&m), vec!["10.244.3.4".parse::<IpAddr>().unwrap()]);

        let m = ask(
            server,
            "nope.dns-test.svc.cluster.local.",
            RecordType::A,
            tcp,
        )
        .await;
        assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
        assert!(matches!(m.authorities[0].data, RData::SOA(_)));
        let m = ask(
            server,
            "web.dns-test.svc.cluster.local.",
            RecordType::AAAA,
            tcp,
        )
        .await;
        assert_eq!(m.metadata.response_code, ResponseCode::NoError);
        assert!(
            m.answers.is_empty(),
            "NODATA for a family the service lacks"
        );

        let m = ask(server, "dns-version.cluster.local.", RecordType::TXT, tcp).await;
        assert_eq!(m.answers.len(), 1);
    }

    // Forwarded to the stand-in upstream, over the client's transport.
    for tcp in [false, true] {
        let m = ask(server, "www.example.test.", RecordType::A, tcp).await;
        assert_eq!(ips(&m), vec!["192.0.2.53".parse::<IpAddr>().unwrap()]);
        assert!(!m.metadata.authoritative);
    }

    // An endpoint turning ready shows within a second.
    let changed = Instant::now();
    slices
        .patch(
            "db-1",
            &PatchParams::default(),
            &Patch::Merge(json!({"endpoints": [
                {"addresses": ["10.244.0.5"], "hostname": "db-0", "conditions": {"ready": true}},
                {"addresses": ["10.244.0.6"], "conditions": {"ready": true}},
                {"addresses": ["10.244.0.7"], "conditions": {"ready": true}},
            ]})),
        )
        .await
        .unwrap();
    loop {
        let m = ask(
            server,
            "db.dns-test.svc.cluster.local.",
            RecordType::A,
            false,
        )
        .await;
        if ips(&m).len() == 3 {
            break;
        }
        assert!(
            changed.elapsed() < Duration::from_secs(1),
            "the newly ready endpoint did not appear within a second"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let took = changed.elapsed();
    eprintln!("endpoint became ready → in DNS after {took:?}");

    let metrics = http_body(dns.bound.metrics.unwrap(), "/metrics").await;
    assert!(
        metrics.contains("coredns_dns_requests_total{proto=\"udp\",type=\"A\"}"),
        "{metrics}"
    );
    assert!(
        metrics.contains("coredns_dns_responses_total{rcode=\"NXDOMAIN\"}"),
        "{metrics}"
    );
    assert!(
        metrics.contains("coredns_dns_request_duration_seconds_bucket"),
        "{metrics}"
    );

    dns.stop().await;
    apiserver.stop().await;
}
