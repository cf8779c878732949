//! Exact rules for each Service shape. Names and rule text follow upstream's
//! own expectations (pkg/proxy/iptables/proxier_test.go).

use super::*;
use crate::iptables::{FakeIptables, Iptables};
use crate::model::{Protocol, ServiceKey};

fn port(ns: &str, name: &str, port_name: &str, cluster_ip: &str, port: u16) -> ServicePort {
    ServicePort {
        name: ServicePortName {
            service: ServiceKey {
                namespace: ns.into(),
                name: name.into(),
            },
            port: port_name.into(),
        },
        protocol: Protocol::Tcp,
        cluster_ip: cluster_ip.parse().unwrap(),
        port,
        node_port: 0,
        external_ips: vec![],
        load_balancer_ips: vec![],
        load_balancer_source_ranges: vec![],
        affinity_seconds: None,
        external_policy_local: false,
        internal_policy_local: false,
        health_check_node_port: 0,
    }
}

fn ep(ip: &str, port: u16) -> Endpoint {
    Endpoint {
        ip: ip.parse().unwrap(),
        port,
        ready: true,
        serving: true,
        terminating: false,
        local: false,
    }
}

fn local(mut e: Endpoint) -> Endpoint {
    e.local = true;
    e
}

fn settings() -> RenderSettings {
    RenderSettings {
        cluster_cidr: Some("10.0.0.0/8".into()),
        ..RenderSettings::default()
    }
}

fn table(services: Vec<(ServicePort, Vec<Endpoint>)>) -> ServiceTable {
    services
        .into_iter()
        .map(|(p, e)| (p.name.clone(), (p, e)))
        .collect()
}

fn render_full(settings: &RenderSettings, services: &ServiceTable) -> Rendered {
    let out = render(
        settings,
        &RenderInput {
            services,
            changed: None,
            existing_nat_chains: &BTreeSet::new(),
            missing_jumps: &[],
        },
    );
    // Every batch must apply cleanly: chains exist before they are jumped to.
    FakeIptables::new()
        .restore(&out.text)
        .expect("the batch applies");
    out
}

/// Rules of `table` mentioning `needle`.
fn rules(out: &Rendered, table: &str, needle: &str) -> Vec<String> {
    let mut in_table = false;
    let mut lines = Vec::new();
    for line in out.text.lines() {
        if let Some(t) = line.strip_prefix('*') {
            in_table = t == table;
        } else if in_table && line.starts_with("-A ") && line.contains(needle) {
            lines.push(line.to_string());
        }
    }
    lines
}

fn chains(out: &Rendered, table: &str) -> Vec<String> {
    let mut in_table = false;
    let mut names = Vec::new();
    for line in out.text.lines() {
        if let Some(t) = line.strip_prefix('*') {
            in_table = t == table;
        } else if in_table && let Some(decl) = line.strip_prefix(':') {
            names.push(decl.split(' ').next().unwrap().to_string());
        }
    }
    names
}

#[test]
fn a_cluster_ip_service_renders_upstreams_whole_layout() {
    let services = table(vec![(
        port("ns1", "svc1", "p80", "172.30.0.41", 80),
        vec![ep("10.180.0.1", 80)],
    )]);
    let out = render_full(&settings(), &services);
    let expected = r#"*filter
:KUBE-NODEPORTS - [0:0]
:KUBE-SERVICES - [0:0]
:KUBE-EXTERNAL-SERVICES - [0:0]
:KUBE-FIREWALL - [0:0]
:KUBE-FORWARD - [0:0]
:KUBE-PROXY-FIREWALL - [0:0]
-A KUBE-FORWARD -m conntrack --ctstate INVALID -j DROP
-A KUBE-FORWARD -m comment --comment "kubernetes forwarding rules" -m mark --mark 0x4000/0x4000 -j ACCEPT
-A KUBE-FORWARD -m comment --comment "kubernetes forwarding conntrack rule" -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
-A KUBE-FIREWALL -m comment --comment "block incoming localnet connections" -d 127.0.0.0/8 ! -s 127.0.0.0/8 -m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT -j DROP
COMMIT
*nat
:KUBE-SERVICES - [0:0]
:KUBE-NODEPORTS - [0:0]
:KUBE-POSTROUTING - [0:0]
:KUBE-MARK-MASQ - [0:0]
:KUBE-SVC-XPGD46QRK7WJZT7O - [0:0]
:KUBE-SEP-SXIVWICOYRO3J4NJ - [0:0]
-A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN
-A KUBE-POSTROUTING -j MARK --xor-mark 0x4000
-A KUBE-POSTROUTING -m comment --comment "kubernetes service traffic requiring SNAT" -j MASQUERADE
-A KUBE-MARK-MASQ -j MARK --or-mark 0x4000
-A KUBE-SERVICES -m comment --comment "ns1/svc1:p80 cluster IP" -m tcp -p tcp -d 172.30.0.41 --dport 80 -j KUBE-SVC-XPGD46QRK7WJZT7O
-A KUBE-SVC-XPGD46QRK7WJZT7O -m comment --comment "ns1/svc1:p80 cluster IP" -m tcp -p tcp -d 172.30.0.41 --dport 80 ! -s 10.0.0.0/8 -j KUBE-MARK-MASQ
-A KUBE-SVC-XPGD46QRK7WJZT7O -m comment --comment "ns1/svc1:p80 -> 10.180.0.1:80" -j KUBE-SEP-SXIVWICOYRO3J4NJ
-A KUBE-SEP-SXIVWICOYRO3J4NJ -m comment --comment ns1/svc1:p80 -s 10.180.0.1 -j KUBE-MARK-MASQ
-A KUBE-SEP-SXIVWICOYRO3J4NJ -m comment --comment ns1/svc1:p80 -m tcp -p tcp -j DNAT --to-destination 10.180.0.1:80
-A KUBE-SERVICES -m comment --comment "kubernetes service nodeports; NOTE: this must be the last rule in this chain" -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS
COMMIT
"#;
    assert_eq!(out.text, expected);
    assert_eq!(out.nat_rules, 10);
    assert_eq!(out.filter_rules, 4);
}

#[test]
fn missing_jumps_are_inserted_at_the_top_of_the_builtin_chains() {
    let services = ServiceTable::new();
    let out = render(
        &settings(),
        &RenderInput {
            services: &services,
            changed: None,
            existing_nat_chains: &BTreeSet::new(),
            missing_jumps: JUMPS,
        },
    );
    assert!(out.text.contains(
        "-I PREROUTING 1 -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES\n"
    ));
    assert!(out.text.contains(
        "-I POSTROUTING 1 -m comment --comment \"kubernetes postrouting rules\" -j KUBE-POSTROUTING\n"
    ));
    assert!(out.text.contains("-I OUTPUT 1 -m conntrack --ctstate NEW -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES\n"));
    let fake = FakeIptables::new();
    fake.restore(&out.text).unwrap();
    assert_eq!(
        fake.chain("nat", "OUTPUT").unwrap(),
        vec!["-m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES"]
    );
}

#[test]
fn endpoints_are_chosen_with_decreasing_probabilities() {
    let services = table(vec![(
        port("ns4", "svc4", "p80", "172.30.0.44", 80),
        vec![
            ep("10.180.0.4", 80),
            ep("10.180.0.5", 80),
            ep("10.180.0.6", 80),
        ],
    )]);
    let out = render_full(&settings(), &services);
    let svc = format!("KUBE-SVC-{}", port_proto_hash("ns4/svc4:p80", "tcp"));
    let sep = |ip: &str| endpoint_chain("ns4/svc4:p80", "tcp", ip);
    assert_eq!(
        rules(&out, "nat", &format!("-A {svc} ")),
        vec![
            format!(
                "-A {svc} -m comment --comment \"ns4/svc4:p80 cluster IP\" -m tcp -p tcp -d 172.30.0.44 --dport 80 ! -s 10.0.0.0/8 -j KUBE-MARK-MASQ"
            ),
            format!(
                "-A {svc} -m comment --comment \"ns4/svc4:p80 -> 10.180.0.4:80\" -m statistic --mode random --probability 0.3333333333 -j {}",
                sep("10.180.0.4:80")
            ),
            format!(
                "-A {svc} -m comment --comment \"ns4/svc4:p80 -> 10.180.0.5:80\" -m statistic --mode random --probability 0.5000000000 -j {}",
                sep("10.180.0.5:80")
            ),
            format!(
                "-A {svc} -m comment --comment \"ns4/svc4:p80 -> 10.180.0.6:80\" -j {}",
                sep("10.180.0.6:80")
            ),
        ]
    );
}

#[test]
fn a_node_port_goes_through_the_external_chain_and_is_masqueraded() {
    let mut p = port("ns2", "svc2", "p80", "172.30.0.42", 80);
    p.node_port = 3001;
    let services = table(vec![(p, vec![ep("10.180.0.2", 80)])]);
    let out = render_full(&settings(), &services);
    let hash = port_proto_hash("ns2/svc2:p80", "tcp");
    assert_eq!(
        rules(&out, "nat", "KUBE-NODEPORTS -m"),
        vec![format!(
            "-A KUBE-NODEPORTS -m comment --comment ns2/svc2:p80 -m tcp -p tcp --dport 3001 -j KUBE-EXT-{hash}"
        )]
    );
    assert_eq!(
        rules(&out, "nat", &format!("-A KUBE-EXT-{hash}")),
        vec![
            format!(
                "-A KUBE-EXT-{hash} -m comment --comment \"masquerade traffic for ns2/svc2:p80 external destinations\" -j KUBE-MARK-MASQ"
            ),
            format!("-A KUBE-EXT-{hash} -j KUBE-SVC-{hash}"),
        ]
    );
    assert!(rules(&out, "filter", "ns2/svc2").is_empty());
}

#[test]
fn a_service_without_endpoints_is_rejected_and_has_no_nat_chains() {
    let mut p = port("ns6", "svc6", "p80", "172.30.0.46", 80);
    p.node_port = 3006;
    p.external_ips = vec!["192.168.99.66".parse().unwrap()];
    let services = table(vec![(p, vec![])]);
    let out = render_full(&settings(), &services);
    assert_eq!(
        rules(&out, "filter", "ns6/svc6"),
        vec![
            "-A KUBE-SERVICES -m comment --comment \"ns6/svc6:p80 has no endpoints\" -m tcp -p tcp -d 172.30.0.46 --dport 80 -j REJECT",
            "-A KUBE-EXTERNAL-SERVICES -m comment --comment \"ns6/svc6:p80 has no endpoints\" -m tcp -p tcp -d 192.168.99.66 --dport 80 -j REJECT",
            "-A KUBE-EXTERNAL-SERVICES -m comment --comment \"ns6/svc6:p80 has no endpoints\" -m addrtype --dst-type LOCAL -m tcp -p tcp --dport 3006 -j REJECT",
        ]
    );
    assert!(rules(&out, "nat", "ns6/svc6").is_empty());
    assert_eq!(chains(&out, "nat"), NAT_CHAINS.to_vec());
}

#[test]
fn session_affinity_checks_recent_lists_before_balancing() {
    let mut p = port("ns1", "svc1", "p80", "172.30.0.41", 80);
    p.affinity_seconds = Some(10800);
    let services = table(vec![(p, vec![ep("10.180.0.1", 80), ep("10.180.0.2", 80)])]);
    let out = render_full(&settings(), &services);
    let svc = "KUBE-SVC-XPGD46QRK7WJZT7O";
    let sep1 = "KUBE-SEP-SXIVWICOYRO3J4NJ";
    let sep2 = endpoint_chain("ns1/svc1:p80", "tcp", "10.180.0.2:80");
    assert_eq!(
        rules(&out, "nat", &format!("-A {svc} ")),
        vec![
            format!(
                "-A {svc} -m comment --comment \"ns1/svc1:p80 cluster IP\" -m tcp -p tcp -d 172.30.0.41 --dport 80 ! -s 10.0.0.0/8 -j KUBE-MARK-MASQ"
            ),
            format!(
                "-A {svc} -m comment --comment \"ns1/svc1:p80 -> 10.180.0.1:80\" -m recent --name {sep1} --rcheck --seconds 10800 --reap -j {sep1}"
            ),
            format!(
                "-A {svc} -m comment --comment \"ns1/svc1:p80 -> 10.180.0.2:80\" -m recent --name {sep2} --rcheck --seconds 10800 --reap -j {sep2}"
            ),
            format!(
                "-A {svc} -m comment --comment \"ns1/svc1:p80 -> 10.180.0.1:80\" -m statistic --mode random --probability 0.5000000000 -j {sep1}"
            ),
            format!("-A {svc} -m comment --comment \"ns1/svc1:p80 -> 10.180.0.2:80\" -j {sep2}"),
        ]
    );
    assert_eq!(
        rules(&out, "nat", &format!("-A {sep1} ")),
        vec![
            format!("-A {sep1} -m comment --comment ns1/svc1:p80 -s 10.180.0.1 -j KUBE-MARK-MASQ"),
            format!(
                "-A {sep1} -m comment --comment ns1/svc1:p80 -m recent --name {sep1} --set -m tcp -p tcp -j DNAT --to-destination 10.180.0.1:80"
            ),
        ]
    );
}

#[test]
fn external_traffic_policy_local_keeps_external_traffic_on_local_endpoints() {
    let mut p = port("ns2", "svc2", "p80", "172.30.0.42", 80);
    p.node_port = 3001;
    p.load_balancer_ips = vec!["1.2.3.4".parse().unwrap()];
    p.external_policy_local = true;
    p.health_check_node_port = 30000;
    let services = table(vec![(
        p,
        vec![local(ep("10.180.0.2", 80)), ep("10.180.0.3", 80)],
    )]);
    let out = render_full(&settings(), &services);
    let hash = port_proto_hash("ns2/svc2:p80", "tcp");
    assert_eq!(
        rules(&out, "nat", &format!("-A KUBE-EXT-{hash}")),
        vec![
            format!(
                "-A KUBE-EXT-{hash} -m comment --comment \"pod traffic for ns2/svc2:p80 external destinations\" -s 10.0.0.0/8 -j KUBE-SVC-{hash}"
            ),
            format!(
                "-A KUBE-EXT-{hash} -m comment --comment \"masquerade LOCAL traffic for ns2/svc2:p80 external destinations\" -m addrtype --src-type LOCAL -j KUBE-MARK-MASQ"
            ),
            format!(
                "-A KUBE-EXT-{hash} -m comment --comment \"route LOCAL traffic for ns2/svc2:p80 external destinations\" -m addrtype --src-type LOCAL -j KUBE-SVC-{hash}"
            ),
            format!("-A KUBE-EXT-{hash} -j KUBE-SVL-{hash}"),
        ]
    );
    // The local chain has the local endpoint only; the cluster chain both.
    let svl = rules(&out, "nat", &format!("-A KUBE-SVL-{hash}"));
    assert_eq!(svl.len(), 1);
    assert!(svl[0].contains("-> 10.180.0.2:80"));
    assert_eq!(rules(&out, "nat", &format!("-A KUBE-SVC-{hash}")).len(), 3);
    assert_eq!(
        rules(&out, "nat", "loadbalancer IP"),
        vec![format!(
            "-A KUBE-SERVICES -m comment --comment \"ns2/svc2:p80 loadbalancer IP\" -m tcp -p tcp -d 1.2.3.4 --dport 80 -j KUBE-EXT-{hash}"
        )]
    );
    assert_eq!(
        rules(&out, "filter", "ns2/svc2"),
        vec![
            "-A KUBE-NODEPORTS -m comment --comment \"ns2/svc2:p80 health check node port\" -m tcp -p tcp --dport 30000 -j ACCEPT"
        ]
    );
}

#[test]
fn external_traffic_policy_local_without_local_endpoints_drops_external_traffic() {
    let mut p = port("ns3", "svc3", "p80", "172.30.0.43", 80);
    p.node_port = 3003;
    p.external_ips = vec!["192.168.99.33".parse().unwrap()];
    p.external_policy_local = true;
    let services = table(vec![(p, vec![ep("10.180.0.3", 80)])]);
    let out = render_full(&settings(), &services);
    let hash = port_proto_hash("ns3/svc3:p80", "tcp");
    assert_eq!(
        rules(&out, "filter", "ns3/svc3"),
        vec![
            "-A KUBE-EXTERNAL-SERVICES -m comment --comment \"ns3/svc3:p80 has no local endpoints\" -m tcp -p tcp -d 192.168.99.33 --dport 80 -j DROP",
            "-A KUBE-EXTERNAL-SERVICES -m comment --comment \"ns3/svc3:p80 has no local endpoints\" -m addrtype --dst-type LOCAL -m tcp -p tcp --dport 3003 -j DROP",
        ]
    );
    // Pods and the host itself still get through, to the cluster chain.
    let ext = rules(&out, "nat", &format!("-A KUBE-EXT-{hash}"));
    assert_eq!(ext.len(), 3);
    assert!(
        ext.iter()
            .all(|r| r.ends_with(&format!("KUBE-SVC-{hash}")) || r.ends_with("KUBE-MARK-MASQ"))
    );
    assert_eq!(out.no_local_endpoints_external, 1);
}

#[test]
fn internal_traffic_policy_local_sends_cluster_ip_traffic_to_local_endpoints_only() {
    let mut p = port("ns7", "svc7", "p80", "172.30.0.47", 80);
    p.internal_policy_local = true;
    let services = table(vec![(
        p.clone(),
        vec![local(ep("10.180.0.7", 80)), ep("10.180.0.8", 80)],
    )]);
    let out = render_full(&settings(), &services);
    let hash = port_proto_hash("ns7/svc7:p80", "tcp");
    assert_eq!(
        rules(
            &out,
            "nat",
            "ns7/svc7:p80 cluster IP\" -m tcp -p tcp -d 172.30.0.47 --dport 80 -j"
        ),
        vec![format!(
            "-A KUBE-SERVICES -m comment --comment \"ns7/svc7:p80 cluster IP\" -m tcp -p tcp -d 172.30.0.47 --dport 80 -j KUBE-SVL-{hash}"
        )]
    );
    assert!(!chains(&out, "nat").contains(&format!("KUBE-SVC-{hash}")));
    let svl = rules(&out, "nat", &format!("-A KUBE-SVL-{hash}"));
    assert_eq!(svl.len(), 2, "{svl:?}");
    assert!(svl[1].ends_with(&endpoint_chain("ns7/svc7:p80", "tcp", "10.180.0.7:80")));

    // No local endpoint: the cluster IP drops.
    let services = table(vec![(p, vec![ep("10.180.0.8", 80)])]);
    let out = render_full(&settings(), &services);
    assert_eq!(
        rules(&out, "filter", "ns7/svc7"),
        vec![
            "-A KUBE-SERVICES -m comment --comment \"ns7/svc7:p80 has no endpoints\" -m tcp -p tcp -d 172.30.0.47 --dport 80 -j REJECT"
        ]
    );
}

#[test]
fn external_ips_and_load_balancer_source_ranges_use_their_chains() {
    let mut p = port("ns5", "svc5", "p80", "172.30.0.45", 80);
    p.external_ips = vec!["192.168.99.55".parse().unwrap()];
    p.load_balancer_ips = vec!["5.6.7.8".parse().unwrap()];
    p.load_balancer_source_ranges = vec!["203.0.113.0/25".into()];
    let services = table(vec![(p, vec![ep("10.180.0.5", 80)])]);
    let out = render_full(&settings(), &services);
    let hash = port_proto_hash("ns5/svc5:p80", "tcp");
    assert_eq!(
        rules(
            &out,
            "nat",
            "-A KUBE-SERVICES -m comment --comment \"ns5/svc5:p80 e"
        ),
        vec![format!(
            "-A KUBE-SERVICES -m comment --comment \"ns5/svc5:p80 external IP\" -m tcp -p tcp -d 192.168.99.55 --dport 80 -j KUBE-EXT-{hash}"
        )]
    );
    assert_eq!(
        rules(
            &out,
            "nat",
            "-A KUBE-SERVICES -m comment --comment \"ns5/svc5:p80 l"
        ),
        vec![format!(
            "-A KUBE-SERVICES -m comment --comment \"ns5/svc5:p80 loadbalancer IP\" -m tcp -p tcp -d 5.6.7.8 --dport 80 -j KUBE-FW-{hash}"
        )]
    );
    assert_eq!(
        rules(&out, "nat", &format!("-A KUBE-FW-{hash}")),
        vec![
            format!(
                "-A KUBE-FW-{hash} -m comment --comment \"ns5/svc5:p80 loadbalancer IP\" -s 203.0.113.0/25 -j KUBE-EXT-{hash}"
            ),
            format!(
                "-A KUBE-FW-{hash} -m comment --comment \"ns5/svc5:p80 loadbalancer IP\" -s 5.6.7.8 -j KUBE-EXT-{hash}"
            ),
            format!(
                "-A KUBE-FW-{hash} -m comment --comment \"other traffic to ns5/svc5:p80 will be dropped by KUBE-PROXY-FIREWALL\""
            ),
        ]
    );
    assert_eq!(
        rules(&out, "filter", "ns5/svc5"),
        vec![format!(
            "-A KUBE-PROXY-FIREWALL -m comment --comment \"ns5/svc5:p80 traffic not accepted by KUBE-FW-{hash}\" -m tcp -p tcp -d 5.6.7.8 --dport 80 -j DROP"
        )]
    );
}

#[test]
fn udp_and_sctp_ports_match_their_protocol() {
    let mut udp = port("kube-system", "kube-dns", "dns", "10.96.0.10", 53);
    udp.protocol = Protocol::Udp;
    let mut sctp = port("ns", "s", "", "10.96.0.11", 9);
    sctp.protocol = Protocol::Sctp;
    let services = table(vec![
        (udp, vec![ep("10.244.0.2", 53)]),
        (sctp, vec![ep("10.244.0.3", 9)]),
    ]);
    let out = render_full(&settings(), &services);
    let hash = port_proto_hash("kube-system/kube-dns:dns", "udp");
    let sep = endpoint_chain("kube-system/kube-dns:dns", "udp", "10.244.0.2:53");
    assert!(rules(&out, "nat", "-A KUBE-SERVICES").contains(&format!(
        "-A KUBE-SERVICES -m comment --comment \"kube-system/kube-dns:dns cluster IP\" -m udp -p udp -d 10.96.0.10 --dport 53 -j KUBE-SVC-{hash}"
    )));
    assert!(rules(&out, "nat", &format!("-A {sep}")).contains(&format!(
        "-A {sep} -m comment --comment kube-system/kube-dns:dns -m udp -p udp -j DNAT --to-destination 10.244.0.2:53"
    )));
    // An unnamed port hashes as "ns/name".
    let sctp_hash = port_proto_hash("ns/s", "sctp");
    assert!(rules(&out, "nat", "-A KUBE-SERVICES").contains(&format!(
        "-A KUBE-SERVICES -m comment --comment \"ns/s cluster IP\" -m sctp -p sctp -d 10.96.0.11 --dport 9 -j KUBE-SVC-{sctp_hash}"
    )));
}

#[test]
fn terminating_endpoints_serve_only_when_none_is_ready() {
    let p = port("ns8", "svc8", "p80", "172.30.0.48", 80);
    let terminating = |ip: &str, serving: bool| Endpoint {
        ready: false,
        serving,
        terminating: true,
        ..ep(ip, 80)
    };
    let svc = format!("KUBE-SVC-{}", port_proto_hash("ns8/svc8:p80", "tcp"));
    let services = table(vec![(
        p.clone(),
        vec![ep("10.180.0.1", 80), terminating("10.180.0.2", true)],
    )]);
    let out = render_full(&settings(), &services);
    let jumps = rules(
        &out,
        "nat",
        &format!("-A {svc} -m comment --comment \"ns8/svc8:p80 ->"),
    );
    assert_eq!(jumps.len(), 1);
    assert!(jumps[0].contains("10.180.0.1:80"));

    let services = table(vec![(
        p,
        vec![
            terminating("10.180.0.2", true),
            terminating("10.180.0.3", false),
        ],
    )]);
    let out = render_full(&settings(), &services);
    let jumps = rules(
        &out,
        "nat",
        &format!("-A {svc} -m comment --comment \"ns8/svc8:p80 ->"),
    );
    assert_eq!(jumps.len(), 1);
    assert!(jumps[0].contains("10.180.0.2:80"));
}

#[test]
fn each_port_of_a_service_gets_its_own_chains() {
    let services = table(vec![
        (
            port("ns9", "svc9", "http", "172.30.0.49", 80),
            vec![ep("10.180.0.9", 8080)],
        ),
        (
            port("ns9", "svc9", "https", "172.30.0.49", 443),
            vec![ep("10.180.0.9", 8443)],
        ),
    ]);
    let out = render_full(&settings(), &services);
    let http = port_proto_hash("ns9/svc9:http", "tcp");
    let https = port_proto_hash("ns9/svc9:https", "tcp");
    assert_ne!(http, https);
    let services_rules = rules(&out, "nat", "-A KUBE-SERVICES -m comment --comment \"ns9");
    assert_eq!(
        services_rules,
        vec![
            format!(
                "-A KUBE-SERVICES -m comment --comment \"ns9/svc9:http cluster IP\" -m tcp -p tcp -d 172.30.0.49 --dport 80 -j KUBE-SVC-{http}"
            ),
            format!(
                "-A KUBE-SERVICES -m comment --comment \"ns9/svc9:https cluster IP\" -m tcp -p tcp -d 172.30.0.49 --dport 443 -j KUBE-SVC-{https}"
            ),
        ]
    );
    assert!(out.text.contains("--to-destination 10.180.0.9:8080"));
    assert!(out.text.contains("--to-destination 10.180.0.9:8443"));
}

#[test]
fn masquerade_all_marks_every_cluster_ip_packet() {
    let services = table(vec![(
        port("ns1", "svc1", "p80", "172.30.0.41", 80),
        vec![ep("10.180.0.1", 80)],
    )]);
    let s = RenderSettings {
        masquerade_all: true,
        masquerade_bit: 15,
        ..settings()
    };
    let out = render_full(&s, &services);
    assert!(out.text.contains("-A KUBE-SVC-XPGD46QRK7WJZT7O -m comment --comment \"ns1/svc1:p80 cluster IP\" -m tcp -p tcp -d 172.30.0.41 --dport 80 -j KUBE-MARK-MASQ\n"));
    assert!(
        out.text
            .contains("-A KUBE-MARK-MASQ -j MARK --or-mark 0x8000\n")
    );
}

#[test]
fn node_port_addresses_limit_the_node_port_jump() {
    let services = ServiceTable::new();
    let s = RenderSettings {
        node_ports: NodePortDestinations::Addresses(vec![
            "192.168.0.2".parse().unwrap(),
            "127.0.0.1".parse().unwrap(),
        ]),
        ..settings()
    };
    let out = render_full(&s, &services);
    assert_eq!(
        rules(&out, "nat", "KUBE-NODEPORTS"),
        vec![
            "-A KUBE-SERVICES -m comment --comment \"kubernetes service nodeports; NOTE: this must be the last rule in this chain\" -d 192.168.0.2 -j KUBE-NODEPORTS",
            "-A KUBE-SERVICES -m comment --comment \"kubernetes service nodeports; NOTE: this must be the last rule in this chain\" -d 127.0.0.1 -j KUBE-NODEPORTS",
        ]
    );
    let s = RenderSettings {
        node_ports: NodePortDestinations::Addresses(vec!["192.168.0.2".parse().unwrap()]),
        ..settings()
    };
    let out = render_full(&s, &services);
    assert!(rules(&out, "filter", "localnet").is_empty());
}

#[test]
fn a_partial_sync_rewrites_only_changed_services_and_deletes_their_stale_chains() {
    let a = port("ns", "a", "p", "10.96.0.1", 80);
    let b = port("ns", "b", "p", "10.96.0.2", 80);
    let before = table(vec![
        (a.clone(), vec![ep("10.1.0.1", 80)]),
        (b.clone(), vec![ep("10.1.0.2", 80)]),
    ]);
    let fake = FakeIptables::new();
    let first = render_full(&settings(), &before);
    fake.restore(&first.text).unwrap();

    // b's endpoint moves; a is untouched.
    let after = table(vec![
        (a, vec![ep("10.1.0.1", 80)]),
        (b, vec![ep("10.1.0.3", 80)]),
    ]);
    let changed: HashSet<ServiceKey> = [ServiceKey {
        namespace: "ns".into(),
        name: "b".into(),
    }]
    .into();
    let out = render(
        &settings(),
        &RenderInput {
            services: &after,
            changed: Some(&changed),
            existing_nat_chains: &first.active_nat_chains.keys().cloned().collect(),
            missing_jumps: &[],
        },
    );
    let old_sep = endpoint_chain("ns/b:p", "tcp", "10.1.0.2:80");
    let a_svc = format!("KUBE-SVC-{}", port_proto_hash("ns/a:p", "tcp"));
    assert!(
        !out.text.contains(&format!(":{a_svc}")),
        "a's chains are left alone"
    );
    assert!(out.text.contains(&format!("-X {old_sep}\n")));
    assert_eq!(out.nat_rules, first.nat_rules, "skipped rules still count");
    fake.restore(&out.text).unwrap();
    assert!(!fake.chains("nat").contains(&old_sep));
    assert_eq!(
        fake.chain("nat", &a_svc).unwrap().len(),
        2,
        "a's rules survive"
    );
    assert!(
        fake.chains("nat")
            .contains(&endpoint_chain("ns/b:p", "tcp", "10.1.0.3:80"))
    );
}
