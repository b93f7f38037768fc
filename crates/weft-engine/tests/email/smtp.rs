//! A real SMTP server for the email tests: mailin's SMTP state machine (the protocol core of
//! `mailin-embedded`) driven by a tokio accept loop, so one process can serve plain,
//! STARTTLS and implicit-TLS sessions, count connections, and misbehave on purpose.

use mailin::{Action, Handler, Response, SessionBuilder};
use parking_lot::Mutex;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// How sessions are secured.
#[derive(Clone)]
pub enum Security {
    /// Plain text only.
    Plain,
    /// Plain text with STARTTLS offered.
    Starttls(Arc<ServerConfig>),
    /// TLS from the first byte.
    Implicit(Arc<ServerConfig>),
}

/// One message as the server received it.
#[derive(Debug, Clone)]
pub struct Received {
    /// MAIL FROM.
    pub from: String,
    /// Every RCPT TO.
    pub to: Vec<String>,
    /// The DATA, headers and body.
    pub data: String,
    /// Whether the session was encrypted when the message came.
    pub tls: bool,
    /// The user that authenticated, if any.
    pub user: Option<String>,
}

/// What the server saw, and the faults it is told to inject.
#[derive(Default)]
pub struct State {
    /// TCP connections accepted.
    pub connections: AtomicUsize,
    /// Messages accepted.
    pub messages: Mutex<Vec<Received>>,
    /// Reply to every RCPT TO with this (e.g. 550).
    pub reject_rcpt: Mutex<Option<(u16, String)>>,
    /// Reply to the next this-many RCPT TO with 451 (greylisting). (Not at the end of
    /// DATA: mailin then stays in its DATA state and swallows the client's QUIT.)
    pub temp_fail_rcpt: AtomicUsize,
    /// Close the next this-many sessions, without a reply, when MAIL FROM arrives.
    pub drop_at_mail: AtomicUsize,
    /// Stop answering the next this-many sessions when MAIL FROM arrives, keeping them open.
    pub stall_at_mail: AtomicUsize,
    /// The user and password AUTH accepts.
    pub credentials: Mutex<Option<(String, String)>>,
}

/// A server listening on 127.0.0.1; stops when dropped.
pub struct SmtpServer {
    /// Where it listens.
    pub addr: SocketAddr,
    /// What it saw.
    pub state: Arc<State>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl SmtpServer {
    /// Starts a server on a free port.
    pub async fn start(security: Security) -> SmtpServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(State::default());
        let st = state.clone();
        let task = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                st.connections.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(serve(tcp, security.clone(), st.clone()));
            }
        });
        SmtpServer { addr, state, task }
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Messages received so far.
    pub fn messages(&self) -> Vec<Received> {
        self.state.messages.lock().clone()
    }
}

/// The per-connection handler mailin calls.
struct Session {
    state: Arc<State>,
    tls: Arc<AtomicBool>,
    current: Option<Received>,
    user: Option<String>,
}

impl Handler for Session {
    fn rcpt(&mut self, _to: &str) -> Response {
        if take_one(&self.state.temp_fail_rcpt) {
            return Response::custom(451, "4.7.1 Greylisted, please try again later".into());
        }
        match self.state.reject_rcpt.lock().clone() {
            Some((code, text)) => Response::custom(code, text),
            None => mailin::response::OK,
        }
    }

    fn data_start(&mut self, _domain: &str, from: &str, _8bit: bool, to: &[String]) -> Response {
        self.current = Some(Received {
            from: from.to_string(),
            to: to.to_vec(),
            data: String::new(),
            tls: self.tls.load(Ordering::SeqCst),
            user: self.user.clone(),
        });
        mailin::response::OK
    }

    fn data(&mut self, buf: &[u8]) -> std::io::Result<()> {
        if let Some(m) = &mut self.current {
            m.data.push_str(&String::from_utf8_lossy(buf));
        }
        Ok(())
    }

    fn data_end(&mut self) -> Response {
        let Some(m) = self.current.take() else {
            return mailin::response::OK;
        };
        self.state.messages.lock().push(m);
        mailin::response::OK
    }

    fn auth_plain(&mut self, _authz: &str, user: &str, password: &str) -> Response {
        self.auth_login(user, password)
    }

    fn auth_login(&mut self, user: &str, password: &str) -> Response {
        let ok = self.state.credentials.lock().as_ref()
            == Some(&(user.to_string(), password.to_string()));
        if ok {
            self.user = Some(user.to_string());
            mailin::response::AUTH_OK
        } else {
            mailin::response::INVALID_CREDENTIALS
        }
    }
}

enum Ended {
    Closed,
    StartTls,
}

async fn serve(tcp: TcpStream, security: Security, state: Arc<State>) {
    let ip: IpAddr = tcp
        .peer_addr()
        .map(|a| a.ip())
        .unwrap_or([127, 0, 0, 1].into());
    let tls = Arc::new(AtomicBool::new(false));
    let mut builder = SessionBuilder::new("mx.weft.test");
    // With AUTH enabled mailin requires it before MAIL, so only when credentials are set.
    if state.credentials.lock().is_some() {
        builder
            .enable_auth(mailin::AuthMechanism::Plain)
            .enable_auth(mailin::AuthMechanism::Login);
    }
    if matches!(security, Security::Starttls(_)) {
        builder.enable_start_tls();
    }
    let handler = Session {
        state: state.clone(),
        tls: tls.clone(),
        current: None,
        user: None,
    };
    let mut session = builder.build(ip, handler);
    let _ = match security {
        Security::Implicit(config) => {
            let Ok(stream) = TlsAcceptor::from(config).accept(tcp).await else {
                return;
            };
            tls.store(true, Ordering::SeqCst);
            session.tls_active();
            let mut stream = BufReader::new(stream);
            greet_and_run(&mut session, &mut stream, &state).await
        }
        Security::Plain => greet_and_run(&mut session, &mut BufReader::new(tcp), &state).await,
        Security::Starttls(config) => {
            let mut stream = BufReader::new(tcp);
            match greet_and_run(&mut session, &mut stream, &state).await {
                Ok(Ended::StartTls) => {
                    let Ok(stream) = TlsAcceptor::from(config).accept(stream.into_inner()).await
                    else {
                        return;
                    };
                    tls.store(true, Ordering::SeqCst);
                    session.tls_active();
                    run(&mut session, &mut BufReader::new(stream), &state).await
                }
                other => other,
            }
        }
    };
}

async fn greet_and_run<S: AsyncRead + AsyncWrite + Unpin>(
    session: &mut mailin::Session<Session>,
    stream: &mut BufReader<S>,
    state: &State,
) -> std::io::Result<Ended> {
    write(stream, &session.greeting()).await?;
    run(session, stream, state).await
}

async fn run<S: AsyncRead + AsyncWrite + Unpin>(
    session: &mut mailin::Session<Session>,
    stream: &mut BufReader<S>,
    state: &State,
) -> std::io::Result<Ended> {
    let mut line = Vec::new();
    loop {
        line.clear();
        if stream.read_until(b'\n', &mut line).await? == 0 {
            return Ok(Ended::Closed);
        }
        if line.to_ascii_uppercase().starts_with(b"MAIL FROM") {
            if take_one(&state.drop_at_mail) {
                return Ok(Ended::Closed);
            }
            if take_one(&state.stall_at_mail) {
                std::future::pending::<()>().await;
            }
        }
        let res = session.process(&line);
        match res.action {
            Action::Reply => write(stream, &res).await?,
            Action::Close => {
                write(stream, &res).await?;
                return Ok(Ended::Closed);
            }
            Action::UpgradeTls => {
                write(stream, &res).await?;
                return Ok(Ended::StartTls);
            }
            Action::NoReply => {}
        }
    }
}

/// Counts `n` down by one; false once it is zero.
fn take_one(n: &AtomicUsize) -> bool {
    n.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok()
}

async fn write<S: AsyncWrite + Unpin>(stream: &mut S, res: &Response) -> std::io::Result<()> {
    stream.write_all(&res.buffer()?).await?;
    stream.flush().await
}

/// A CA and a certificate it signed for `127.0.0.1` and `localhost`.
pub struct TestPki {
    /// The CA certificate, PEM: what the client must trust.
    pub ca_pem: String,
    /// The server's TLS settings.
    pub server: Arc<ServerConfig>,
}

/// Generates a fresh CA and server certificate.
pub fn pki() -> TestPki {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair, KeyUsagePurpose};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    ca.distinguished_name
        .push(rcgen::DnType::CommonName, "weft test CA");
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca, ca_key);
    let key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
        .unwrap()
        .signed_by(&key, &issuer)
        .unwrap();
    let provider = Arc::new(tokio_rustls::rustls::crypto::aws_lc_rs::default_provider());
    let server = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![CertificateDer::from(leaf.der().to_vec())],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        )
        .unwrap();
    TestPki {
        ca_pem: ca_cert.pem(),
        server: Arc::new(server),
    }
}
