//! Security against the real server: every call of the surface under every kind of
//! caller, TLS and mTLS with certificates made here, idempotent writes, limits.

use std::path::Path;
use std::time::Duration;

use arrow::array::RecordBatch;
use arrow_flight::flight_service_client::FlightServiceClient;
use arrow_flight::sql::client::FlightSqlServiceClient;
use arrow_flight::sql::{CommandStatementIngest, TableDefinitionOptions};
use arrow_flight::{FlightClient, Ticket};
use flightstore::auth::AuthFile;
use futures::{stream, StreamExt, TryStreamExt};
use serde_json::{json, Value};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};
use tonic::Code;

use crate::common::*;

/// What a call needs on collection `A`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Needs {
    /// Any valid token.
    Any,
    Read,
    Write,
    Admin,
    /// `admin` on every collection (`*:admin`).
    AdminAll,
}

/// A caller: its token (if any) and what it may do on `A`.
struct Caller {
    name: &'static str,
    token: Option<String>,
    /// `None`: not authenticated.
    level: Option<Needs>,
}

/// An auth file with one token per kind of caller; the callers, the admin token.
fn callers(path: &Path) -> (Vec<Caller>, String) {
    let mut file = AuthFile::default();
    let mut token = |name: &str, grants: &[&str]| {
        let grants = grants.iter().map(|g| g.parse().unwrap()).collect();
        file.create_token(name, grants).unwrap()
    };
    let admin_all = token("admin-all", &["*:admin"]);
    let callers = vec![
        Caller {
            name: "no token",
            token: None,
            level: None,
        },
        Caller {
            name: "bad token",
            token: Some("fst_not-a-token".into()),
            level: None,
        },
        Caller {
            name: "A:read",
            token: Some(token("read-a", &["A:read"])),
            level: Some(Needs::Read),
        },
        Caller {
            name: "A:write",
            token: Some(token("write-a", &["A:write"])),
            level: Some(Needs::Write),
        },
        Caller {
            name: "A:admin",
            token: Some(token("admin-a", &["A:admin"])),
            level: Some(Needs::Admin),
        },
        Caller {
            name: "*:read",
            token: Some(token("read-all", &["*:read"])),
            level: Some(Needs::Read),
        },
        Caller {
            name: "B:admin",
            token: Some(token("admin-b", &["B:admin"])),
            level: Some(Needs::Any),
        },
        Caller {
            name: "*:admin",
            token: Some(admin_all.clone()),
            level: Some(Needs::AdminAll),
        },
    ];
    file.save(path).unwrap();
    (callers, admin_all)
}

/// A client that sends `token` on every call.
async fn client_with(addr: &str, token: Option<&str>) -> FlightClient {
    let mut client = connect(addr).await;
    if let Some(t) = token {
        client
            .add_header("authorization", &format!("Bearer {t}"))
            .unwrap();
    }
    client
}

async fn sql_client_with(addr: &str, token: Option<&str>) -> FlightSqlServiceClient<Channel> {
    let channel = Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut client = FlightSqlServiceClient::new(channel);
    if let Some(t) = token {
        client.set_token(t.to_string());
    }
    client
}

/// Everything a caller could change, as the admin sees it: collections, items with
/// their versions, snapshots.
async fn fingerprint(admin: &mut FlightClient) -> Value {
    let mut out = serde_json::Map::new();
    let collections = action(admin, "list_collections", json!({})).await.unwrap();
    for c in collections.as_array().unwrap() {
        let c = c.as_str().unwrap();
        let items = action(admin, "list_items", json!({"collection": c}))
            .await
            .unwrap();
        let mut versions = serde_json::Map::new();
        for i in items.as_array().unwrap() {
            let i = i.as_str().unwrap();
            let v = action(admin, "list_versions", json!({"collection": c, "item": i}))
                .await
                .unwrap();
            let info = action(admin, "item_info", json!({"collection": c, "item": i}))
                .await
                .unwrap();
            versions.insert(i.into(), json!([v, info["metadata"]]));
        }
        let snapshots = action(admin, "list_snapshots", json!({"collection": c}))
            .await
            .unwrap();
        out.insert(c.into(), json!({"items": versions, "snapshots": snapshots}));
    }
    Value::Object(out)
}

/// Collection A with item x (10 rows) and snapshot s1, collection B with item y.
async fn seed(admin: &mut FlightClient) {
    for c in ["A", "B"] {
        let item = if c == "A" { "x" } else { "y" };
        put(
            admin,
            cmd(json!({"collection": c, "item": item, "mode": "overwrite"})),
            vec![ticks(0..10, 0.0)],
        )
        .await
        .unwrap();
    }
    let _ = action(
        admin,
        "create_snapshot",
        json!({"collection": "A", "snapshot": "s1"}),
    )
    .await;
}

type Outcome = Result<(), (Code, String)>;

fn outcome<T>(r: Result<T, arrow_flight::error::FlightError>) -> Outcome {
    r.map(|_| ()).map_err(|e| match e {
        arrow_flight::error::FlightError::Tonic(s) => (s.code(), s.message().to_string()),
        other => (Code::Unknown, other.to_string()),
    })
}

/// One call of the surface, made by a caller with `token`.
async fn call(addr: &str, token: Option<&str>, name: &str) -> Outcome {
    let mut c = client_with(addr, token).await;
    let range = json!({"collection": "A", "item": "x", "start": T0, "end": T0 + 3 * SEC});
    let act = |name: &'static str, body: Value| (name, body);
    let action_call = match name {
        "health" => Some(act("health", json!({}))),
        "list_collections" => Some(act("list_collections", json!({}))),
        "create_collection" => Some(act("create_collection", json!({"collection": "A"}))),
        "delete_collection" => Some(act("delete_collection", json!({"collection": "A"}))),
        "list_items" => Some(act("list_items", json!({"collection": "A"}))),
        "item_info" => Some(act("item_info", json!({"collection": "A", "item": "x"}))),
        "delete_item" => Some(act("delete_item", json!({"collection": "A", "item": "x"}))),
        "delete_range" => Some(act("delete_range", range.clone())),
        "get_metadata" => Some(act("get_metadata", json!({"collection": "A", "item": "x"}))),
        "update_metadata" => Some(act(
            "update_metadata",
            json!({"collection": "A", "item": "x", "metadata": {"k": "v"}}),
        )),
        "list_versions" => Some(act(
            "list_versions",
            json!({"collection": "A", "item": "x"}),
        )),
        "create_snapshot" => Some(act(
            "create_snapshot",
            json!({"collection": "A", "snapshot": "s2"}),
        )),
        "list_snapshots" => Some(act("list_snapshots", json!({"collection": "A"}))),
        "delete_snapshot" => Some(act(
            "delete_snapshot",
            json!({"collection": "A", "snapshot": "s1"}),
        )),
        "compact" => Some(act("compact", json!({"collection": "A", "item": "x"}))),
        "vacuum" => Some(act("vacuum", json!({"collection": "A"}))),
        "vacuum (all)" => Some(act("vacuum", json!({}))),
        "missing_intervals" => Some(act(
            "missing_intervals",
            json!({"collection": "A", "item": "x", "start": T0, "end": T0 + 20 * SEC, "freq": "1s"}),
        )),
        "changes_since" => Some(act("changes_since", json!({"collection": "A", "since": 0}))),
        _ => None,
    };
    if let Some((kind, body)) = action_call {
        return outcome(action(&mut c, kind, body).await);
    }
    match name {
        "ListActions" => outcome(c.list_actions().await.map(|s| s.boxed())),
        "ListFlights(A)" => outcome(
            c.list_flights(json!({"collection": "A"}).to_string())
                .await
                .map(|s| s.boxed()),
        ),
        "GetFlightInfo" => outcome(c.get_flight_info(path("A", "x")).await),
        "PollFlightInfo" => outcome(c.poll_flight_info(path("A", "x")).await),
        "GetSchema" => outcome(c.get_schema(path("A", "x")).await),
        "DoGet" => outcome(get(&mut c, json!({"collection": "A", "item": "x"})).await),
        "DoPut" => outcome(put(&mut c, path("A", "x"), vec![ticks(100..110, 0.0)]).await),
        "DoPut (creates an item)" => outcome(
            put(
                &mut c,
                cmd(json!({"collection": "A", "item": "new"})),
                vec![ticks(0..5, 0.0)],
            )
            .await,
        ),
        "DoExchange" => {
            let r = c.do_exchange(stream::empty().boxed()).await;
            match r {
                Err(e) if code(&e) == Code::Unimplemented => Ok(()),
                other => outcome(other.map(|_| ())),
            }
        }
        "SQL query" | "SQL INSERT" | "SQL DELETE" | "SQL prepare" | "SQL ingest" => {
            let mut s = sql_client_with(addr, token).await;
            let r = match name {
                "SQL query" => s
                    .execute("SELECT count(*) FROM \"A\".\"x\"".into(), None)
                    .await
                    .map(|_| ()),
                "SQL INSERT" => s
                    .execute_update(
                        format!(
                            "INSERT INTO \"A\".\"x\" (ts, price) VALUES ({}, 1.0)",
                            T0 + 500 * SEC
                        ),
                        None,
                    )
                    .await
                    .map(|_| ()),
                "SQL DELETE" => s
                    .execute_update(
                        format!("DELETE FROM \"A\".\"x\" WHERE ts >= to_timestamp_nanos({T0})"),
                        None,
                    )
                    .await
                    .map(|_| ()),
                "SQL prepare" => s
                    .prepare("SELECT * FROM \"A\".\"x\"".into(), None)
                    .await
                    .map(|_| ()),
                _ => {
                    let command = CommandStatementIngest {
                        table_definition_options: Some(TableDefinitionOptions {
                            if_not_exist: 1,
                            if_exists: 2, // append
                        }),
                        table: "ingested".into(),
                        schema: Some("A".into()),
                        catalog: None,
                        temporary: false,
                        transaction_id: None,
                        options: Default::default(),
                    };
                    let batches = stream::iter(vec![Ok::<_, arrow_flight::error::FlightError>(
                        ticks(0..3, 0.0),
                    )]);
                    s.execute_ingest(command, batches).await.map(|_| ())
                }
            };
            r.map_err(|e| match e {
                arrow_flight::error::FlightError::Tonic(s) => (s.code(), s.message().to_string()),
                other => {
                    let text = other.to_string();
                    let code = if text.contains("PermissionDenied") {
                        Code::PermissionDenied
                    } else if text.contains("Unauthenticated") {
                        Code::Unauthenticated
                    } else {
                        Code::Unknown
                    };
                    (code, text)
                }
            })
        }
        other => panic!("no call named {other}"),
    }
}

/// Every call of the surface and what it needs on `A`. Every action of `ListActions`
/// must be here: a new action cannot skip this test.
fn surface() -> Vec<(&'static str, Needs)> {
    let mut calls = vec![
        ("ListActions", Needs::Any),
        ("ListFlights(A)", Needs::Read),
        ("GetFlightInfo", Needs::Read),
        ("PollFlightInfo", Needs::Read),
        ("GetSchema", Needs::Read),
        ("DoGet", Needs::Read),
        ("DoPut", Needs::Write),
        ("DoPut (creates an item)", Needs::Write),
        ("DoExchange", Needs::Any),
        ("SQL query", Needs::Read),
        ("SQL prepare", Needs::Read),
        ("SQL INSERT", Needs::Write),
        ("SQL DELETE", Needs::Write),
        ("SQL ingest", Needs::Write),
        ("vacuum (all)", Needs::AdminAll),
    ];
    for (name, ..) in flightstore::flight::ACTIONS {
        let needs = match *name {
            "health" | "list_collections" => Needs::Any,
            "list_items" | "item_info" | "get_metadata" | "list_versions" | "list_snapshots"
            | "missing_intervals" | "changes_since" => Needs::Read,
            "delete_item" | "delete_range" | "update_metadata" | "create_snapshot"
            | "delete_snapshot" | "compact" => Needs::Write,
            "create_collection" | "delete_collection" | "vacuum" => Needs::Admin,
            other => panic!("action {other} has no row in the security test: add it"),
        };
        calls.push((*name, needs));
    }
    calls
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_call_checks_its_caller_and_a_refused_call_changes_nothing() {
    let auth = tempfile::tempdir().unwrap();
    let auth_file = auth.path().join("auth.json");
    let (callers, admin_token) = callers(&auth_file);
    let server = TestServer::start_with(|c| c.auth_file = Some(auth_file.clone())).await;
    let addr = server.addr.to_string();
    let mut admin = client_with(&addr, Some(&admin_token)).await;
    seed(&mut admin).await;
    let mut checked = 0;
    for (name, needs) in surface() {
        for caller in &callers {
            let before = fingerprint(&mut admin).await;
            let got = call(&addr, caller.token.as_deref(), name).await;
            let who = format!("{name} by {}", caller.name);
            match caller.level {
                None => {
                    let (code, message) = got.clone().expect_err(&who);
                    assert_eq!(code, Code::Unauthenticated, "{who}: {message}");
                }
                Some(level)
                    if level >= needs
                        && !(needs == Needs::AdminAll && level != Needs::AdminAll) =>
                {
                    if let Err((code, message)) = &got {
                        assert!(
                            !matches!(code, Code::Unauthenticated | Code::PermissionDenied),
                            "{who}: refused: {code:?} {message}"
                        );
                    }
                }
                Some(_) => {
                    let (code, message) = got.clone().expect_err(&who);
                    assert_eq!(code, Code::PermissionDenied, "{who}: {message}");
                }
            }
            if got.is_err() {
                assert_eq!(
                    fingerprint(&mut admin).await,
                    before,
                    "{who} changed the store"
                );
            } else {
                seed(&mut admin).await;
            }
            checked += 1;
        }
    }
    println!("{checked} (call, caller) pairs checked");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listings_show_only_what_a_token_may_read() {
    let auth = tempfile::tempdir().unwrap();
    let auth_file = auth.path().join("auth.json");
    let (callers, admin_token) = callers(&auth_file);
    let server = TestServer::start_with(|c| c.auth_file = Some(auth_file.clone())).await;
    let addr = server.addr.to_string();
    let mut admin = client_with(&addr, Some(&admin_token)).await;
    seed(&mut admin).await;
    let token = |name: &str| {
        callers
            .iter()
            .find(|c| c.name == name)
            .unwrap()
            .token
            .clone()
    };
    for (caller, want) in [
        ("A:read", vec!["A"]),
        ("B:admin", vec!["B"]),
        ("*:read", vec!["A", "B"]),
    ] {
        let mut c = client_with(&addr, token(caller).as_deref()).await;
        let got = action(&mut c, "list_collections", json!({})).await.unwrap();
        assert_eq!(got, json!(want), "{caller}");
        let flights: Vec<_> = c
            .list_flights("")
            .await
            .unwrap()
            .try_collect()
            .await
            .unwrap();
        let listed: Vec<String> = flights
            .iter()
            .map(|f| f.flight_descriptor.as_ref().unwrap().path[0].clone())
            .collect();
        let mut want_items: Vec<String> = want.iter().map(|s| s.to_string()).collect();
        want_items.sort();
        assert_eq!(listed, want_items, "{caller}: ListFlights");
        let mut s = sql_client_with(&addr, token(caller).as_deref()).await;
        let info = s
            .get_db_schemas(arrow_flight::sql::CommandGetDbSchemas::default())
            .await
            .unwrap();
        let ticket = info.endpoint[0].ticket.clone().unwrap();
        let batches: Vec<RecordBatch> =
            s.do_get(ticket).await.unwrap().try_collect().await.unwrap();
        let schemas = arrow::compute::concat_batches(&batches[0].schema(), &batches).unwrap();
        let names = schemas
            .column_by_name("db_schema_name")
            .unwrap()
            .as_any()
            .downcast_ref::<arrow::array::StringArray>()
            .unwrap()
            .iter()
            .map(|s| s.unwrap().to_string())
            .collect::<Vec<_>>();
        assert_eq!(names, want, "{caller}: GetDbSchemas");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_log_in_with_handshake_and_revoked_credentials_stop_working() {
    let auth = tempfile::tempdir().unwrap();
    let auth_path = auth.path().join("auth.json");
    let mut file = AuthFile::default();
    let token = file
        .create_token("ingest", vec!["A:write".parse().unwrap()])
        .unwrap();
    file.add_user("alice", "pa:ss w0rd", vec!["A:read".parse().unwrap()])
        .unwrap();
    file.save(&auth_path).unwrap();
    let server = TestServer::start_with(|c| c.auth_file = Some(auth_path.clone())).await;
    let addr = server.addr.to_string();
    let mut writer = client_with(&addr, Some(&token)).await;
    put(&mut writer, path("A", "x"), vec![ticks(0..10, 0.0)])
        .await
        .unwrap();

    // Basic credentials through Handshake give a bearer token (FlightClient::handshake
    // sends them as the payload too; the server reads the header).
    let mut alice = connect(&addr).await;
    alice
        .add_header("authorization", &basic("alice", "pa:ss w0rd"))
        .unwrap();
    let session = alice.handshake(bytes::Bytes::new()).await.unwrap();
    let session = String::from_utf8(session.to_vec()).unwrap();
    let mut alice = client_with(&addr, Some(&session)).await;
    let rows = get(&mut alice, json!({"collection": "A", "item": "x"}))
        .await
        .unwrap();
    assert_eq!(ids(&rows).len(), 10);
    let e = put(&mut alice, path("A", "x"), vec![ticks(10..11, 0.0)])
        .await
        .unwrap_err();
    assert_eq!(code(&e), Code::PermissionDenied);

    let mut wrong = connect(&addr).await;
    wrong
        .add_header("authorization", &basic("alice", "nope"))
        .unwrap();
    let e = wrong.handshake(bytes::Bytes::new()).await.unwrap_err();
    assert_eq!(code(&e), Code::Unauthenticated);

    // Basic credentials on another call are refused: they go to Handshake.
    let mut basic_call = connect(&addr).await;
    basic_call
        .add_header("authorization", &basic("alice", "pa:ss w0rd"))
        .unwrap();
    let e = get(&mut basic_call, json!({"collection": "A", "item": "x"}))
        .await
        .unwrap_err();
    assert_eq!(code(&e), Code::Unauthenticated);

    // Revoke the token and remove the user: refused within a few seconds, no restart.
    let mut file = AuthFile::load(&auth_path).unwrap();
    file.revoke_token("ingest").unwrap();
    file.remove_user("alice").unwrap();
    file.save(&auth_path).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let w = put(&mut writer, path("A", "x"), vec![ticks(20..21, 0.0)]).await;
        let r = get(&mut alice, json!({"collection": "A", "item": "x"})).await;
        match (w, r) {
            (Err(w), Err(r)) => {
                assert_eq!(
                    (code(&w), code(&r)),
                    (Code::Unauthenticated, Code::Unauthenticated)
                );
                break;
            }
            _ => assert!(
                std::time::Instant::now() < deadline,
                "revocation not applied"
            ),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn basic(user: &str, password: &str) -> String {
    use base64::Engine as _;
    let text = format!("{user}:{password}");
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(text)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_non_loopback_address_needs_an_auth_file_or_no_auth() {
    let dir = tempfile::tempdir().unwrap();
    let config = |no_auth: bool| flightstore::server::Config {
        data: dir.path().to_str().unwrap().to_string(),
        bind: "0.0.0.0:0".parse().unwrap(),
        no_auth,
        ..Default::default()
    };
    let e = flightstore::server::Bound::bind(config(false))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("--no-auth"), "{e}");
    flightstore::server::Bound::bind(config(true))
        .await
        .unwrap();
}

/// A CA, and a certificate it signed for `names` (PEM: cert, key).
struct Pki {
    ca_pem: String,
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
}

impl Pki {
    fn new() -> Self {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca = params.self_signed(&key).unwrap();
        Self {
            ca_pem: ca.pem(),
            issuer: rcgen::Issuer::new(params, key),
        }
    }

    fn issue(&self, names: &[&str]) -> (String, String) {
        let key = rcgen::KeyPair::generate().unwrap();
        let params =
            rcgen::CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    }
}

async fn tls_client(
    addr: &str,
    tls: ClientTlsConfig,
) -> Result<FlightClient, tonic::transport::Error> {
    let channel = Channel::from_shared(format!("https://{addr}"))
        .unwrap()
        .tls_config(tls)?
        .connect()
        .await?;
    Ok(FlightClient::new_from_inner(FlightServiceClient::new(
        channel,
    )))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_and_mutual_tls_with_certificates_made_here() {
    let pki = Pki::new();
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p
    };
    let (cert, key) = pki.issue(&["localhost"]);
    let tls = flightstore::server::TlsFiles {
        cert: write("server.pem", &cert),
        key: write("server.key", &key),
        client_ca: None,
    };
    let server = TestServer::start_with(|c| c.tls = Some(tls.clone())).await;
    let addr = server.addr.to_string();
    let trust = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(&pki.ca_pem))
        .domain_name("localhost");
    let mut client = tls_client(&addr, trust.clone()).await.unwrap();
    put(&mut client, path("A", "x"), vec![ticks(0..5, 0.0)])
        .await
        .unwrap();
    let rows = get(&mut client, json!({"collection": "A", "item": "x"}))
        .await
        .unwrap();
    assert_eq!(ids(&rows), vec![0, 1, 2, 3, 4]);
    // Plaintext to a TLS port fails.
    let mut plain = connect(&addr).await;
    assert!(action(&mut plain, "health", json!({})).await.is_err());
    // A client that does not trust the server's CA fails.
    let other = Pki::new();
    let distrust = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(&other.ca_pem))
        .domain_name("localhost");
    match tls_client(&addr, distrust).await {
        Err(_) => {}
        Ok(mut c) => assert!(action(&mut c, "health", json!({})).await.is_err()),
    }
    drop(server);

    // mTLS: the server asks for client certificates signed by its client CA.
    let clients = Pki::new();
    let mtls = flightstore::server::TlsFiles {
        client_ca: Some(write("clients-ca.pem", &clients.ca_pem)),
        ..tls
    };
    let server = TestServer::start_with(|c| c.tls = Some(mtls.clone())).await;
    let addr = server.addr.to_string();
    let (cert, key) = clients.issue(&["a-client"]);
    let mut with_cert = tls_client(&addr, trust.clone().identity(Identity::from_pem(cert, key)))
        .await
        .unwrap();
    assert_eq!(
        action(&mut with_cert, "health", json!({})).await.unwrap()["status"],
        "ok"
    );
    match tls_client(&addr, trust.clone()).await {
        Err(_) => {}
        Ok(mut c) => assert!(
            action(&mut c, "health", json!({})).await.is_err(),
            "a client without a certificate was served"
        ),
    }
    // A certificate from another CA is refused too.
    let (cert, key) = other.issue(&["intruder"]);
    match tls_client(&addr, trust.identity(Identity::from_pem(cert, key))).await {
        Err(_) => {}
        Ok(mut c) => assert!(action(&mut c, "health", json!({})).await.is_err()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_id_commits_once_even_when_retries_race() {
    let server = TestServer::start().await;
    let addr = server.addr.to_string();
    let mut c = connect(&addr).await;
    let write = |id: &str, from: i64| {
        let addr = addr.clone();
        let id = id.to_string();
        async move {
            let mut c = connect(&addr).await;
            put(
                &mut c,
                cmd(json!({"collection": "c", "item": "x", "write_id": id})),
                vec![ticks(from..from + 100, 0.0)],
            )
            .await
            .unwrap()
        }
    };
    let first = write("w-1", 0).await;
    assert_eq!(first.get("duplicate"), None);
    let again = write("w-1", 0).await;
    let mut want = first.clone();
    want["duplicate"] = json!(true);
    assert_eq!(again, want);
    // Eight retries of one new id at once: one commit, seven duplicates of it.
    let racing: Vec<_> = (0..8).map(|_| tokio::spawn(write("w-2", 100))).collect();
    let mut receipts = Vec::new();
    for r in racing {
        receipts.push(r.await.unwrap());
    }
    let fresh: Vec<&Value> = receipts
        .iter()
        .filter(|r| r.get("duplicate").is_none())
        .collect();
    assert_eq!(fresh.len(), 1, "{receipts:?}");
    for r in &receipts {
        assert_eq!(r["version"], fresh[0]["version"]);
    }
    // Through a path descriptor, the id goes in a header.
    let mut h = connect(&addr).await;
    h.add_header(flightstore::flight::WRITE_ID_HEADER, "w-3")
        .unwrap();
    let a = put(&mut h, path("c", "x"), vec![ticks(200..210, 0.0)])
        .await
        .unwrap();
    let b = put(&mut h, path("c", "x"), vec![ticks(200..210, 0.0)])
        .await
        .unwrap();
    assert_eq!((a.get("duplicate"), &b["duplicate"]), (None, &json!(true)));
    let rows = get(&mut c, json!({"collection": "c", "item": "x"}))
        .await
        .unwrap();
    let want: Vec<i64> = (0..210).collect();
    assert_eq!(ids(&rows), want, "every row once");
    // An id is at most 128 bytes.
    let e = put(
        &mut c,
        cmd(json!({"collection": "c", "item": "x", "write_id": "x".repeat(129)})),
        vec![ticks(0..1, 0.0)],
    )
    .await
    .unwrap_err();
    assert_eq!(code(&e), Code::InvalidArgument);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_ids_are_kept_across_a_restart() {
    let data = tempfile::tempdir().unwrap();
    let start = || TestServer::start_with(|c| c.data = data.path().to_str().unwrap().to_string());
    let request = cmd(json!({"collection": "c", "item": "x", "write_id": "nightly-2024-01-02"}));
    let server = start().await;
    let mut c = server.client().await;
    let first = put(&mut c, request.clone(), vec![ticks(0..10, 0.0)])
        .await
        .unwrap();
    drop(c);
    drop(server);
    tokio::time::sleep(Duration::from_millis(500)).await; // the old server lets go
    let server = start().await;
    let mut c = server.client().await;
    let again = put(&mut c, request, vec![ticks(0..10, 0.0)]).await.unwrap();
    assert_eq!(again["duplicate"], true);
    assert_eq!(again["version"], first["version"]);
    let rows = get(&mut c, json!({"collection": "c", "item": "x"}))
        .await
        .unwrap();
    assert_eq!(ids(&rows).len(), 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_answer_with_their_codes_and_the_server_stays_healthy() {
    let server = TestServer::start_with(|c| {
        c.max_message_bytes = 1 << 20;
        c.max_puts = 2;
        c.limits.max_calls = 300;
        c.limits.idle_timeout = Duration::from_secs(1);
    })
    .await;
    let addr = server.addr.to_string();
    let mut c = connect(&addr).await;
    put(&mut c, path("c", "x"), vec![ticks(0..1000, 0.0)])
        .await
        .unwrap();

    // 200 clients at once, each on its own connection: all served.
    let clients: Vec<_> = (0..200)
        .map(|k| {
            let addr = addr.clone();
            tokio::spawn(async move {
                let mut c = connect(&addr).await;
                let rows = get(
                    &mut c,
                    json!({"collection": "c", "item": "x", "limit": k + 1}),
                )
                .await
                .unwrap();
                assert_eq!(ids(&rows).len(), k + 1);
            })
        })
        .collect();
    for c in clients {
        c.await.unwrap();
    }

    // An upload larger than the message limit: RESOURCE_EXHAUSTED, nothing written.
    let big = ticks(0..60_000, 0.0); // ~1.9 MiB in one message
    let e = put(&mut c, path("c", "big"), vec![big]).await.unwrap_err();
    assert_eq!(code(&e), Code::ResourceExhausted, "{e}");
    let e = action(
        &mut c,
        "item_info",
        json!({"collection": "c", "item": "big"}),
    )
    .await
    .unwrap_err();
    assert_eq!(code(&e), Code::NotFound);

    // Uploads that stall: two hold the upload slots; a third is refused at once; the
    // stalled ones end with DEADLINE_EXCEEDED after the idle timeout, freeing the slots.
    let stalled: Vec<_> = (0..2)
        .map(|k| {
            let addr = addr.clone();
            tokio::spawn(async move {
                let mut c = connect(&addr).await;
                let first = arrow_flight::encode::FlightDataEncoderBuilder::new()
                    .with_flight_descriptor(Some(path("c", &format!("stall{k}"))))
                    .build(stream::iter(vec![Ok(ticks(0..10, 0.0))]))
                    .take(2); // schema and one batch, then nothing more (never ends)
                let upload = first.chain(stream::pending());
                let e = c.do_put(upload).await;
                match e {
                    Ok(mut results) => results.try_next().await.map(|_| ()),
                    Err(e) => Err(e),
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let e = put(&mut c, path("c", "third"), vec![ticks(0..10, 0.0)])
        .await
        .unwrap_err();
    assert_eq!(code(&e), Code::ResourceExhausted, "{e}");
    for s in stalled {
        let e = s.await.unwrap().unwrap_err();
        assert_eq!(code(&e), Code::DeadlineExceeded, "{e}");
    }
    put(&mut c, path("c", "after"), vec![ticks(0..10, 0.0)])
        .await
        .unwrap();

    // A reader that never reads: the server keeps serving others.
    let wide = (0..10)
        .map(|k| ticks(k * 20_000..(k + 1) * 20_000, 0.0))
        .collect();
    put(&mut c, path("c", "wide"), wide).await.unwrap();
    let mut idle = connect(&addr).await;
    let _never_read = idle
        .do_get(Ticket::new(
            json!({"collection": "c", "item": "wide"}).to_string(),
        ))
        .await
        .unwrap();
    let rows = get(&mut c, json!({"collection": "c", "item": "x"}))
        .await
        .unwrap();
    assert_eq!(ids(&rows).len(), 1000);
    assert_eq!(
        action(&mut c, "health", json!({})).await.unwrap()["status"],
        "ok"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rust_client_speaks_tls_and_presents_its_certificate() {
    let (pki, clients) = (Pki::new(), Pki::new());
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p
    };
    let (cert, key) = pki.issue(&["localhost"]);
    let tls = flightstore::server::TlsFiles {
        cert: write("server.pem", &cert),
        key: write("server.key", &key),
        client_ca: Some(write("clients-ca.pem", &clients.ca_pem)),
    };
    let server = TestServer::start_with(|c| c.tls = Some(tls)).await;
    let url = format!("grpc+tls://localhost:{}", server.addr.port());
    let (cert, key) = clients.issue(&["a-client"]);
    let client = flightstore_client::Client::builder(url.as_str())
        .ca_certificate(pki.ca_pem.as_bytes())
        .identity(cert.as_bytes(), key.as_bytes())
        .connect()
        .await
        .unwrap();
    assert_eq!(client.health().await.unwrap().status, "ok");
    // Without its certificate the server refuses it; so does a client that trusts
    // another CA (or the public web roots).
    let without = flightstore_client::Client::builder(url.as_str())
        .ca_certificate(pki.ca_pem.as_bytes())
        .connect()
        .await;
    assert!(without.is_err() || without.unwrap().health().await.is_err());
    let distrust = flightstore_client::Client::connect(url.as_str()).await;
    assert!(distrust.is_err() || distrust.unwrap().health().await.is_err());
}
