//! The DNS front end: decodes a query, answers it from the index or
//! forwards it, encodes the reply (truncated over UDP when it does not fit),
//! and the UDP and TCP listeners that carry it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA, CNAME, NS, PTR, SOA, SRV, TXT};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};

use crate::forward::Forwarder;
use crate::index::{Answer, Index, QType, Rr};
use crate::metrics::Metrics;

/// The largest UDP reply offered to EDNS clients (the DNS flag day value).
const EDNS_PAYLOAD: u16 = 1232;
/// A TCP connection idle this long is closed.
const TCP_IDLE: Duration = Duration::from_secs(10);

/// Answers DNS messages.
pub(crate) struct Responder {
    pub index: Arc<Index>,
    pub forwarder: Forwarder,
    pub metrics: Arc<Metrics>,
    pub ttl: u32,
    zone: Name,
    mname: Name,
    rname: Name,
}

/// What a query needs after the synchronous pass.
pub(crate) enum Outcome {
    /// The reply, ready to send.
    Reply(Vec<u8>),
    /// Not ours: relay to the upstreams.
    Forward { qtype: String },
    /// An ExternalName CNAME whose target the upstreams should resolve.
    Chase {
        reply: Box<Message>,
        target: Name,
        qtype: RecordType,
        udp_limit: usize,
    },
}

impl Responder {
    pub fn new(
        index: Arc<Index>,
        forwarder: Forwarder,
        metrics: Arc<Metrics>,
        ttl: u32,
    ) -> Responder {
        let domain = index.domain().to_string();
        let name = |s: String| Name::from_ascii(s).unwrap_or_else(|_| Name::root());
        Responder {
            zone: name(format!("{domain}.")),
            mname: name(format!("ns.dns.{domain}.")),
            rname: name(format!("hostmaster.{domain}.")),
            index,
            forwarder,
            metrics,
            ttl,
        }
    }

    /// Answers `query` completely, forwarding when needed.
    pub async fn handle(&self, query: &[u8], tcp: bool) -> Option<Vec<u8>> {
        let started = Instant::now();
        match self.local(query, tcp, started) {
            None => None,
            Some(Outcome::Reply(reply)) => Some(reply),
            Some(outcome) => Some(self.finish(query, tcp, outcome, started).await),
        }
    }

    /// The synchronous pass: everything the index can answer on its own.
    /// `None`: the packet is not a query worth a reply.
    pub fn local(&self, packet: &[u8], tcp: bool, started: Instant) -> Option<Outcome> {
        let proto = if tcp { "tcp" } else { "udp" };
        let request = match Message::from_vec(packet) {
            Ok(m) => m,
            Err(_) if packet.len() >= 12 && packet[2] & 0x80 == 0 => {
                let id = u16::from_be_bytes([packet[0], packet[1]]);
                let reply = Message::error_msg(id, OpCode::Query, ResponseCode::FormErr);
                return Some(Outcome::Reply(
                    self.encode(&reply, "FORMERR", proto, started, 512),
                ));
            }
            Err(_) => return None,
        };
        if request.metadata.message_type != MessageType::Query {
            return None;
        }
        let id = request.metadata.id;
        let udp_limit = if tcp {
            usize::from(u16::MAX)
        } else {
            request
                .edns
                .as_ref()
                .map_or(512, |e| e.max_payload().clamp(512, EDNS_PAYLOAD))
                .into()
        };
        let mut reply = Message::response(id, request.metadata.op_code);
        reply.metadata.recursion_desired = request.metadata.recursion_desired;
        reply.metadata.recursion_available = true;
        reply.add_queries(request.queries.iter().cloned());
        if request.edns.is_some() {
            let mut edns = Edns::new();
            edns.set_max_payload(EDNS_PAYLOAD);
            reply.set_edns(edns);
        }
        if request.metadata.op_code != OpCode::Query {
            reply.metadata.response_code = ResponseCode::NotImp;
            return Some(Outcome::Reply(
                self.encode(&reply, "other", proto, started, udp_limit),
            ));
        }
        let [question] = request.queries.as_slice() else {
            reply.metadata.response_code = ResponseCode::FormErr;
            return Some(Outcome::Reply(
                self.encode(&reply, "other", proto, started, udp_limit),
            ));
        };
        let rtype = question.query_type();
        let qtype_label = rtype.to_string();
        let qname = question.name().to_ascii().to_ascii_lowercase();
        let answer = self.index.lookup(&qname, qtype(rtype));
        let owner = question.name().clone();
        let ttl = self.ttl;
        match answer {
            Answer::NotOurs => Some(Outcome::Forward { qtype: qtype_label }),
            Answer::NoData | Answer::NxDomain => {
                if answer == Answer::NxDomain {
                    reply.metadata.response_code = ResponseCode::NXDomain;
                }
                reply.metadata.authoritative = true;
                reply.add_authority(Record::from_rdata(
                    self.zone.clone(),
                    ttl,
                    RData::SOA(self.soa()),
                ));
                Some(Outcome::Reply(self.encode(
                    &reply,
                    &qtype_label,
                    proto,
                    started,
                    udp_limit,
                )))
            }
            Answer::Records {
                answers,
                additionals,
            } => {
                reply.metadata.authoritative = true;
                let mut chase = None;
                for rr in answers {
                    if let Rr::Cname(target) = &rr
                        && !matches!(rtype, RecordType::CNAME | RecordType::ANY)
                    {
                        chase = Name::from_ascii(target).ok();
                    }
                    reply.add_answer(Record::from_rdata(owner.clone(), ttl, self.rdata(rr)));
                }
                for (name, rr) in additionals {
                    if let Ok(name) = Name::from_ascii(&name) {
                        reply.add_additional(Record::from_rdata(name, ttl, self.rdata(rr)));
                    }
                }
                if let Some(target) = chase.filter(|_| !self.forwarder.upstreams().is_empty()) {
                    return Some(Outcome::Chase {
                        reply: Box::new(reply),
                        target,
                        qtype: rtype,
                        udp_limit,
                    });
                }
                Some(Outcome::Reply(self.encode(
                    &reply,
                    &qtype_label,
                    proto,
                    started,
                    udp_limit,
                )))
            }
        }
    }

    /// The asynchronous pass: relays and CNAME chasing.
    pub async fn finish(
        &self,
        packet: &[u8],
        tcp: bool,
        outcome: Outcome,
        started: Instant,
    ) -> Vec<u8> {
        let proto = if tcp { "tcp" } else { "udp" };
        match outcome {
            Outcome::Reply(reply) => reply,
            Outcome::Forward { qtype } => match self.forwarder.forward(packet, tcp).await {
                Some(reply) => {
                    let rcode = reply
                        .get(3)
                        .map_or(ResponseCode::ServFail, |b| ResponseCode::from(0, b & 0x0f));
                    let seconds = started.elapsed().as_secs_f64();
                    self.metrics
                        .observe(proto, qtype, rcode_name(rcode).to_string(), seconds);
                    reply
                }
                None => {
                    let id = u16::from_be_bytes([packet[0], packet[1]]);
                    let mut reply = Message::error_msg(id, OpCode::Query, ResponseCode::ServFail);
                    if let Ok(request) = Message::from_vec(packet) {
                        reply.metadata.recursion_desired = request.metadata.recursion_desired;
                        reply.add_queries(request.queries);
                    }
                    reply.metadata.recursion_available = true;
                    self.encode(&reply, &qtype, proto, started, 512)
                }
            },
            Outcome::Chase {
                mut reply,
                target,
                qtype,
                udp_limit,
            } => {
                let mut query = Message::query();
                query.metadata.recursion_desired = true;
                query.add_query(Query::query(target, qtype));
                // The chase is this server's own question: UDP suffices.
                if let Ok(bytes) = query.to_vec()
                    && let Some(upstream) = self.forwarder.forward(&bytes, false).await
                    && let Ok(found) = Message::from_vec(&upstream)
                {
                    reply.add_answers(found.answers);
                }
                self.encode(&reply, &qtype.to_string(), proto, started, udp_limit)
            }
        }
    }

    /// Encodes `reply`; over the limit it goes out truncated (TC set, no
    /// records) so the client retries over TCP.
    fn encode(
        &self,
        reply: &Message,
        qtype: &str,
        proto: &'static str,
        started: Instant,
        limit: usize,
    ) -> Vec<u8> {
        let mut bytes = reply.to_vec().unwrap_or_default();
        if bytes.len() > limit {
            bytes = reply.truncate().to_vec().unwrap_or_default();
        }
        let rcode = rcode_name(reply.metadata.response_code);
        self.metrics.observe(
            proto,
            qtype.to_string(),
            rcode.to_string(),
            started.elapsed().as_secs_f64(),
        );
        bytes
    }

    fn soa(&self) -> SOA {
        SOA::new(
            self.mname.clone(),
            self.rname.clone(),
            self.index.serial(),
            7200,
            1800,
            86400,
            self.ttl,
        )
    }

    fn rdata(&self, rr: Rr) -> RData {
        let name = |s: &str| Name::from_ascii(s).unwrap_or_else(|_| Name::root());
        match rr {
            Rr::A(ip) => RData::A(A(ip)),
            Rr::Aaaa(ip) => RData::AAAA(AAAA(ip)),
            Rr::Cname(n) => RData::CNAME(CNAME(name(&n))),
            Rr::Ptr(n) => RData::PTR(PTR(name(&n))),
            Rr::Srv(priority, weight, port, target) => {
                RData::SRV(SRV::new(priority, weight, port, name(&target)))
            }
            Rr::Txt(text) => RData::TXT(TXT::new(vec![text])),
            Rr::Soa => RData::SOA(self.soa()),
            Rr::Ns(n) => RData::NS(NS(name(&n))),
        }
    }
}

fn rcode_name(code: ResponseCode) -> &'static str {
    match code {
        ResponseCode::NoError => "NOERROR",
        ResponseCode::FormErr => "FORMERR",
        ResponseCode::ServFail => "SERVFAIL",
        ResponseCode::NXDomain => "NXDOMAIN",
        ResponseCode::NotImp => "NOTIMP",
        ResponseCode::Refused => "REFUSED",
        _ => "other",
    }
}

fn qtype(rtype: RecordType) -> QType {
    match rtype {
        RecordType::A => QType::A,
        RecordType::AAAA => QType::Aaaa,
        RecordType::SRV => QType::Srv,
        RecordType::PTR => QType::Ptr,
        RecordType::TXT => QType::Txt,
        RecordType::SOA => QType::Soa,
        RecordType::NS => QType::Ns,
        RecordType::CNAME => QType::Cname,
        RecordType::ANY => QType::Any,
        _ => QType::Other,
    }
}

/// Serves UDP on `socket` with one receive loop per core; only forwarded
/// queries get a task of their own.
pub(crate) async fn serve_udp(socket: UdpSocket, responder: Arc<Responder>) {
    let socket = Arc::new(socket);
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get());
    let mut loops = tokio::task::JoinSet::new();
    for _ in 0..workers {
        let socket = socket.clone();
        let responder = responder.clone();
        loops.spawn(async move {
            let mut buf = vec![0u8; 4096];
            loop {
                let (n, peer) = match socket.recv_from(&mut buf).await {
                    Ok(got) => got,
                    Err(error) => {
                        // ICMP errors from earlier sends surface here; keep serving.
                        tracing::debug!(%error, "udp receive");
                        continue;
                    }
                };
                let started = Instant::now();
                match responder.local(&buf[..n], false, started) {
                    None => {}
                    Some(Outcome::Reply(reply)) => {
                        let _ = socket.send_to(&reply, peer).await;
                    }
                    Some(outcome) => {
                        let packet = buf[..n].to_vec();
                        let socket = socket.clone();
                        let responder = responder.clone();
                        tokio::spawn(async move {
                            let reply = responder.finish(&packet, false, outcome, started).await;
                            let _ = socket.send_to(&reply, peer).await;
                        });
                    }
                }
            }
        });
    }
    while loops.join_next().await.is_some() {}
}

/// Serves DNS over TCP (two-byte length framing, several queries per
/// connection).
pub(crate) async fn serve_tcp(listener: TcpListener, responder: Arc<Responder>) {
    loop {
        let Ok((stream, peer)) = listener.accept().await else {
            continue;
        };
        let responder = responder.clone();
        tokio::spawn(async move {
            if let Err(error) = tcp_connection(stream, &responder).await {
                tracing::debug!(%peer, %error, "tcp connection");
            }
        });
    }
}

async fn tcp_connection(mut stream: TcpStream, responder: &Responder) -> std::io::Result<()> {
    loop {
        let len = match tokio::time::timeout(TCP_IDLE, stream.read_u16()).await {
            Ok(Ok(len)) => len,
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
            Ok(Err(e)) => return Err(e),
            Err(_) => return Ok(()),
        };
        let mut packet = vec![0u8; len.into()];
        tokio::time::timeout(TCP_IDLE, stream.read_exact(&mut packet))
            .await
            .map_err(std::io::Error::other)??;
        let Some(reply) = responder.handle(&packet, true).await else {
            return Ok(());
        };
        let len = u16::try_from(reply.len()).map_err(std::io::Error::other)?;
        let mut framed = Vec::with_capacity(reply.len() + 2);
        framed.extend_from_slice(&len.to_be_bytes());
        framed.extend_from_slice(&reply);
        stream.write_all(&framed).await?;
    }
}

/// Binds UDP and TCP on the same address (the TCP port follows the UDP one
/// when port 0 was asked for).
pub(crate) async fn bind(address: SocketAddr) -> std::io::Result<(UdpSocket, TcpListener)> {
    let udp = UdpSocket::bind(address).await?;
    let tcp = TcpListener::bind(udp.local_addr()?).await?;
    Ok((udp, tcp))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::Service;
    use k8s_openapi::api::discovery::v1::EndpointSlice;
    use serde_json::json;

    fn responder() -> Responder {
        let index = Arc::new(Index::new("cluster.local"));
        index.apply_service(
            serde_json::from_value::<Service>(json!({
                "metadata": {"name": "web", "namespace": "default"},
                "spec": {"clusterIP": "10.96.0.20"},
            }))
            .unwrap(),
        );
        index.apply_service(
            serde_json::from_value::<Service>(json!({
                "metadata": {"name": "big", "namespace": "default"},
                "spec": {"clusterIP": "None"},
            }))
            .unwrap(),
        );
        let endpoints: Vec<serde_json::Value> = (0..100)
            .map(|i| json!({"addresses": [format!("10.244.1.{i}")]}))
            .collect();
        index.apply_slice(
            serde_json::from_value::<EndpointSlice>(json!({
                "metadata": {"name": "big-1", "namespace": "default",
                             "labels": {"kubernetes.io/service-name": "big"}},
                "addressType": "IPv4", "endpoints": endpoints,
            }))
            .unwrap(),
        );
        Responder::new(index, Forwarder::default(), Arc::new(Metrics::new()), 30)
    }

    fn query(name: &str, rtype: RecordType, edns: bool) -> Vec<u8> {
        let mut m = Message::query();
        m.add_query(Query::query(Name::from_ascii(name).unwrap(), rtype));
        if edns {
            m.set_edns(Edns::new());
        }
        m.to_vec().unwrap()
    }

    async fn ask(r: &Responder, name: &str, rtype: RecordType, tcp: bool, edns: bool) -> Message {
        let reply = r.handle(&query(name, rtype, edns), tcp).await.unwrap();
        Message::from_vec(&reply).unwrap()
    }

    #[tokio::test]
    async fn answers_keep_the_case_of_the_question() {
        let m = ask(
            &responder(),
            "WEB.Default.svc.Cluster.Local.",
            RecordType::A,
            false,
            false,
        )
        .await;
        assert_eq!(m.answers.len(), 1);
        assert_eq!(
            m.answers[0].name.to_ascii(),
            "WEB.Default.svc.Cluster.Local."
        );
        assert!(m.metadata.authoritative);
    }

    #[tokio::test]
    async fn large_udp_answers_are_truncated_and_tcp_carries_them_whole() {
        let r = responder();
        let m = ask(
            &r,
            "big.default.svc.cluster.local.",
            RecordType::A,
            false,
            false,
        )
        .await;
        assert!(m.metadata.truncation);
        assert!(m.answers.is_empty());
        let m = ask(
            &r,
            "big.default.svc.cluster.local.",
            RecordType::A,
            false,
            true,
        )
        .await;
        assert!(
            m.metadata.truncation,
            "1232 bytes of EDNS do not hold 100 A records either"
        );
        let m = ask(
            &r,
            "big.default.svc.cluster.local.",
            RecordType::A,
            true,
            false,
        )
        .await;
        assert!(!m.metadata.truncation);
        assert_eq!(m.answers.len(), 100);
    }

    #[tokio::test]
    async fn edns_queries_get_edns_replies() {
        let m = ask(
            &responder(),
            "web.default.svc.cluster.local.",
            RecordType::A,
            false,
            true,
        )
        .await;
        assert_eq!(m.edns.map(|e| e.max_payload()), Some(EDNS_PAYLOAD));
    }

    #[tokio::test]
    async fn garbage_gets_formerr_and_no_upstream_gets_servfail() {
        let r = responder();
        let reply = r
            .handle(&[0x12, 0x34, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0xff], false)
            .await
            .unwrap();
        let m = Message::from_vec(&reply).unwrap();
        assert_eq!(m.metadata.id, 0x1234);
        assert_eq!(m.metadata.response_code, ResponseCode::FormErr);
        let m = ask(&r, "example.com.", RecordType::A, false, false).await;
        assert_eq!(m.metadata.response_code, ResponseCode::ServFail);
    }
}
