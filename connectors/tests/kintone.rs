//! The kintone connector against the emulator: paging past 500, idempotent adds,
//! status actions, password auth, kintone's error bodies in the error text.

use nagare_connectors::kintone::emulator::{Emulator, DEMO_INQUIRY_TOKEN, DEMO_PASSWORD, DEMO_TOKEN};
use nagare_connectors::{Connectors, ConnectorsConfig};
use nagare_engine::{Call, ConnectorError};
use serde_json::{json, Value};

async fn serve(emu: &Emulator) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let e = emu.clone();
    tokio::spawn(async move { e.serve(listener, std::future::pending()).await.unwrap() });
    format!("http://{addr}")
}

fn connectors(yaml: &str) -> Connectors {
    Connectors::new(&ConnectorsConfig::from_yaml(yaml).unwrap())
}

async fn run(c: &Connectors, name: &str, key: &str, attempt: u32, input: Value) -> Result<Value, ConnectorError> {
    let call =
        Call { connector: name.into(), input, idempotency_key: key.into(), instance: 1, node: "n".into(), attempt };
    c.registry().get(name).unwrap().call(&call).await
}

#[tokio::test]
async fn query_reads_past_500_records() {
    let emu = Emulator::in_memory();
    let base = serve(&emu).await;
    let c = connectors(&format!(
        "connectors:\n  kintone: {{ type: kintone, base_url: '{base}', app: 1, token: {DEMO_TOKEN} }}\n"
    ));
    for i in 0..1203 {
        let r =
            run(&c, "kintone.add", "k", 1, json!({"record": {"k_id": format!("N-{i:04}"), "k_ステータス": "対応要"}}))
                .await
                .unwrap();
        assert_eq!(r["created"], json!(true));
    }
    let all = run(&c, "kintone.query", "q", 1, json!({"query": r#"k_ステータス in ("対応要")"#})).await.unwrap();
    assert_eq!(all["count"], json!(1203));
    let ids: Vec<u64> =
        all["records"].as_array().unwrap().iter().map(|r| r["$id"].as_str().unwrap().parse().unwrap()).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "in $id order, none twice");
    let some = run(
        &c,
        "kintone.query",
        "q",
        1,
        json!({"query": r#"k_ステータス in ("対応要") order by k_id desc"#, "fields": ["k_id"], "max": 600}),
    )
    .await
    .unwrap();
    assert_eq!(some["count"], json!(600));
    assert_eq!(some["records"][0], json!({"k_id": "N-1202"}));
    assert_eq!(some["records"][599], json!({"k_id": "N-0603"}));
    // kintone's own limit stays: `limit` above 500 is refused, `max` is the total.
    let e = run(&c, "kintone.query", "q", 1, json!({"query": "limit 600"})).await.unwrap_err();
    assert!(matches!(&e, ConnectorError::Fatal(m) if m.contains("GAIA_QU01")), "{e:?}");
    let capped = run(&c, "kintone.query", "q", 1, json!({"query": "", "max": 10})).await.unwrap();
    assert_eq!(capped["count"], json!(10));
    // A query kintone refuses: its code comes through.
    let e = run(&c, "kintone.query", "q", 1, json!({"query": r#"k_ステータス = "対応要""#})).await.unwrap_err();
    assert!(
        matches!(&e, ConnectorError::Business { code, message } if code == "GAIA_IQ03" && message.contains("演算子")),
        "{e:?}"
    );
}

#[tokio::test]
async fn add_with_an_idempotency_field_adds_once() {
    let emu = Emulator::in_memory();
    let base = serve(&emu).await;
    let c = connectors(&format!(
        "connectors:\n  ledger: {{ type: kintone, base_url: '{base}', app: 1, token: {DEMO_TOKEN} }}\n"
    ));
    let input = json!({"record": {"k_氏名": "高橋"}, "idempotency_field": "k_Qid"});
    let first = run(&c, "ledger.add", "9/add/4", 1, input.clone()).await.unwrap();
    let again = run(&c, "ledger.add", "9/add/4", 2, input).await.unwrap();
    assert_eq!(first["id"], again["id"]);
    assert_eq!((first["created"].clone(), again["created"].clone()), (json!(true), json!(false)));
    let id: u64 = first["id"].as_str().unwrap().parse().unwrap();
    assert_eq!(emu.record(1, id).unwrap()["k_Qid"]["value"], json!("9/add/4"));
    assert_eq!(emu.read(|s| s.apps[&1].records.len()), 4, "three seeded, one added");
}

#[tokio::test]
async fn status_actions_with_password_auth_and_errors() {
    let emu = Emulator::in_memory();
    let base = serve(&emu).await;
    std::env::set_var("NAGARE_TEST_KINTONE_PASSWORD", DEMO_PASSWORD);
    let c = connectors(&format!(
        "connectors:\n  inquiry: {{ type: kintone, base_url: '{base}', app: 2, user: demo, password: {{ env: NAGARE_TEST_KINTONE_PASSWORD }} }}\n  wrong: {{ type: kintone, base_url: '{base}', app: 2, token: {DEMO_TOKEN} }}\n  inq_token: {{ type: kintone, base_url: '{base}', app: 2, token: '{DEMO_INQUIRY_TOKEN}' }}\n"
    ));
    let added = run(&c, "inquiry.add", "k", 1, json!({"record": {"件名": "ログインできない"}})).await.unwrap();
    let id = added["id"].as_str().unwrap().to_string();
    // 処理中 picks one user: the assignee is needed and must be a user.
    let e = run(&c, "inquiry.update_status", "k", 1, json!({"id": id, "action": "処理開始"})).await.unwrap_err();
    assert!(matches!(&e, ConnectorError::Business { code, .. } if code == "GAIA_SA01"), "{e:?}");
    let nobody = json!({"id": id, "action": "処理開始", "assignee": "nobody"});
    let e = run(&c, "inquiry.update_status", "k", 1, nobody).await.unwrap_err();
    assert!(format!("{e:?}").contains("nobody"), "{e:?}");
    let go = json!({"id": id, "action": "処理開始", "assignee": "demo"});
    let r = run(&c, "inquiry.update_status", "k", 1, go).await.unwrap();
    assert_eq!(r["revision"], json!("3"));
    let got = run(&c, "inq_token.get", "k", 1, json!({"id": id})).await.unwrap();
    assert_eq!(got["record"]["ステータス"], json!("処理中"));
    assert_eq!(got["record"]["作業者"], json!([{"code": "demo", "name": "demo"}]));
    assert_eq!(got["record"]["更新者"]["code"], json!("demo"));

    // An action not possible from this status: kintone's code and message.
    let e = run(&c, "inquiry.update_status", "k", 1, json!({"id": id, "action": "処理開始"})).await.unwrap_err();
    assert!(matches!(&e, ConnectorError::Business { code, .. } if code == "GAIA_IL03"), "{e:?}");
    // A token of another app: fatal, with kintone's message.
    let e = run(&c, "wrong.get", "k", 1, json!({"id": id})).await.unwrap_err();
    match e {
        ConnectorError::Fatal(m) => {
            assert!(m.contains("GAIA_IA02") && m.contains("HTTP 520") && m.contains("id: "), "{m}");
            assert!(!m.contains(DEMO_TOKEN), "the token is not in the message: {m}");
        }
        other => panic!("{other:?}"),
    }
    // A validation error: the `errors` object comes through.
    let e = run(&c, "inquiry.add", "k", 1, json!({"record": {"内容": "x"}})).await.unwrap_err();
    assert!(
        matches!(&e, ConnectorError::Business { code, message } if code == "CB_VA01" && message.contains("record.件名.value")),
        "{e:?}"
    );
    let e = run(&c, "inquiry.get", "k", 1, json!({"id": 999})).await.unwrap_err();
    assert!(matches!(&e, ConnectorError::Business { code, .. } if code == "GAIA_RE01"), "{e:?}");
}

/// Issue 15.7: apps in a guest space and domains behind Basic authentication.
#[tokio::test]
async fn guest_space_apps_and_basic_auth_domains() {
    let emu = Emulator::in_memory();
    let base = serve(&emu).await;
    emu.set_guest_space(1, Some(7)).unwrap();
    emu.set_basic_auth(Some(("gate", "gate-pw"))).unwrap();
    std::env::set_var("TEST_KINTONE_BASIC_PW", "gate-pw");
    let cfg = |extra: &str| {
        connectors(&format!(
            "connectors:\n  kintone: {{ type: kintone, base_url: '{base}', app: 1, token: {DEMO_TOKEN}{extra} }}\n"
        ))
    };
    let get = |c: Connectors| async move { run(&c, "kintone.get", "g", 1, json!({"id": 1})).await };
    let basic = ", basic_auth: { user: gate, password: { env: TEST_KINTONE_BASIC_PW } }";

    // Everything configured: the record comes back.
    let ok = get(cfg(&format!(", guest_space: 7{basic}"))).await.unwrap();
    assert_eq!(ok["record"]["k_氏名"], json!("山田 太郎"));
    // Without the Basic credentials the front door refuses (not retried).
    let e = get(cfg(", guest_space: 7")).await.unwrap_err();
    assert!(matches!(&e, ConnectorError::Fatal(m) if m.contains("401")), "{e:?}");
    // Outside the guest space: kintone's GAIA_IL23.
    let e = get(cfg(basic)).await.unwrap_err();
    assert!(format!("{e:?}").contains("GAIA_IL23"), "{e:?}");
    // The wrong space: the app is not there.
    let e = get(cfg(&format!(", guest_space: 8{basic}"))).await.unwrap_err();
    assert!(format!("{e:?}").contains("GAIA_IL23"), "{e:?}");
    // Unknown keys are still refused.
    assert!(ConnectorsConfig::from_yaml(&format!(
        "connectors:\n  kintone: {{ type: kintone, base_url: '{base}', token: t, basic_auth: {{ user: a }} }}\n"
    ))
    .is_err());
}

/// Issue 15.8: the emulator answers the bulk record APIs (all or nothing, upsert,
/// updateKey) and the file APIs, with FILE fields in records.
#[tokio::test]
async fn bulk_records_update_key_and_files() {
    let emu = Emulator::in_memory();
    let base = serve(&emu).await;
    let http = reqwest::Client::new();
    let send = |req: reqwest::RequestBuilder| async move {
        let r = req.header("X-Cybozu-API-Token", DEMO_TOKEN).send().await.unwrap();
        let status = r.status().as_u16();
        let v: Value = r.json().await.unwrap_or(Value::Null);
        (status, v)
    };
    let url = |p: &str| format!("{base}/k/v1/{p}");
    let count = || emu.read(|st| st.apps[&1].records.len());
    let before = count();

    // Two added at once; then a batch with one bad record adds nothing.
    let (s, v) = send(http.post(url("records.json")).json(&json!({"app": 1, "records": [
        {"k_id": {"value": "B-1"}}, {"k_id": {"value": "B-2"}}]})))
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["ids"].as_array().unwrap().len(), 2);
    let (s, v) = send(http.post(url("records.json")).json(&json!({"app": 1, "records": [
        {"k_id": {"value": "B-3"}}, {"k_プラン": {"value": "ゴールド"}}]})))
    .await;
    assert_eq!((s, v["code"].as_str()), (400, Some("CB_VA01")), "{v}");
    assert!(v["errors"].as_object().unwrap().keys().all(|k| k.starts_with("records[1].")), "{v}");
    assert_eq!(count(), before + 2, "all or nothing");
    let too_many: Vec<Value> = (0..101).map(|i| json!({"k_id": {"value": format!("M-{i}")}})).collect();
    assert_eq!(send(http.post(url("records.json")).json(&json!({"app": 1, "records": too_many}))).await.0, 400);

    // PUT by updateKey, and upsert adds the one that is missing.
    let (s, v) = send(http.put(url("records.json")).json(&json!({"app": 1, "upsert": true, "records": [
        {"updateKey": {"field": "k_id", "value": "B-1"}, "record": {"k_氏名": {"value": "一郎"}}},
        {"updateKey": {"field": "k_id", "value": "B-9"}, "record": {"k_氏名": {"value": "九郎"}}}]})))
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["records"][0]["operation"], "UPDATE");
    assert_eq!(v["records"][1]["operation"], "INSERT");
    let (s, v) = send(http.put(url("record.json")).json(&json!({"app": 1,
        "updateKey": {"field": "k_id", "value": "B-2"}, "record": {"k_氏名": {"value": "二郎"}}})))
    .await;
    assert_eq!(s, 200, "updateKey on a single update: {v}");
    let (s, v) = send(http.put(url("record.json")).json(&json!({"app": 1,
        "updateKey": {"field": "k_氏名", "value": "二郎"}, "record": {}})))
    .await;
    assert_eq!(s, 400, "updateKey needs a unique field: {v}");

    // A file: uploaded, attached to a record, downloaded under the record's key.
    let form = reqwest::multipart::Form::new().part(
        "file",
        reqwest::multipart::Part::bytes(b"%PDF-1.4 contract".to_vec())
            .file_name("契約書.pdf")
            .mime_str("application/pdf")
            .unwrap(),
    );
    let (s, v) = send(http.post(url("file.json")).multipart(form)).await;
    assert_eq!(s, 200, "{v}");
    let uploaded = v["fileKey"].as_str().unwrap().to_string();
    let id = emu.read(|st| st.apps[&1].records.values().find(|r| r.values["k_id"] == "B-1").unwrap().id);
    let (s, v) = send(http.put(url("record.json")).json(&json!({"app": 1, "id": id,
        "record": {"k_契約書": {"value": [{"fileKey": uploaded}]}}})))
    .await;
    assert_eq!(s, 200, "{v}");
    let rec = emu.record(1, id).unwrap();
    let file = &rec["k_契約書"]["value"][0];
    assert_eq!((file["name"].clone(), file["contentType"].clone()), (json!("契約書.pdf"), json!("application/pdf")));
    assert_eq!(file["size"], json!("17"));
    let key = file["fileKey"].as_str().unwrap();
    assert_ne!(key, uploaded, "kintone hands out a new key for the attached file");
    let got = http.get(url("file.json")).query(&[("fileKey", key)]).header("X-Cybozu-API-Token", DEMO_TOKEN);
    let got = got.send().await.unwrap();
    assert_eq!(got.headers()["content-type"], "application/pdf");
    assert_eq!(got.bytes().await.unwrap().as_ref(), b"%PDF-1.4 contract");
    let (s, v) = send(http.get(url("file.json")).query(&[("fileKey", "nope")])).await;
    assert_eq!((s, v["code"].as_str()), (404, Some("GAIA_BL01")));

    // DELETE: all or nothing too.
    let (s, _) =
        send(http.delete(url("records.json")).query(&[("app", "1"), ("ids[0]", &id.to_string()), ("ids[1]", "99999")]))
            .await;
    assert_eq!(s, 404);
    assert!(emu.record(1, id).is_ok());
    let (s, v) = send(http.delete(url("records.json")).json(&json!({"app": 1, "ids": [id]}))).await;
    assert_eq!(s, 200, "{v}");
    assert!(emu.record(1, id).is_err());
}

/// Issue 15.9: a GET with its parameters in a JSON body, and a POST with
/// `X-HTTP-Method-Override: GET` (long queries), are read as kintone reads them;
/// error ids are random per request.
#[tokio::test]
async fn get_parameters_in_a_json_body_and_method_override() {
    let emu = Emulator::in_memory();
    let base = serve(&emu).await;
    let http = reqwest::Client::new();
    let url = format!("{base}/k/v1/records.json");
    let body = json!({"app": 1, "query": r#"k_ステータス in ("未対応") order by $id asc"#, "fields": ["k_id"], "totalCount": true});
    for req in [http.get(&url).json(&body), http.post(&url).header("X-HTTP-Method-Override", "GET").json(&body)] {
        let v: Value = req.header("X-Cybozu-API-Token", DEMO_TOKEN).send().await.unwrap().json().await.unwrap();
        let recs = v["records"].as_array().unwrap_or_else(|| panic!("{v}"));
        assert!(!recs.is_empty(), "{v}");
        assert!(recs.iter().all(|r| r.as_object().unwrap().keys().collect::<Vec<_>>() == ["k_id"]), "fields[]: {v}");
        assert!(v["totalCount"].is_string(), "{v}");
    }
    let bad =
        |_: ()| http.get(format!("{base}/k/v1/record.json?app=1&id=999")).header("X-Cybozu-API-Token", DEMO_TOKEN);
    let a: Value = bad(()).send().await.unwrap().json().await.unwrap();
    let b: Value = bad(()).send().await.unwrap().json().await.unwrap();
    assert_eq!(a["code"], "GAIA_RE01");
    assert_ne!(a["id"], b["id"], "ids differ per request");
}

/// Issue 15.8: a nagare `file` value written to a FILE field is uploaded
/// (`/k/v1/file.json`) and attached; the record reads back with the file.
#[tokio::test]
async fn file_values_are_uploaded_to_file_fields() {
    use nagare_connectors::cloudsign::files::MemoryBlobs;
    let emu = Emulator::in_memory();
    let base = serve(&emu).await;
    let blobs = MemoryBlobs::default();
    let pdf = b"%PDF-1.4 signed contract".to_vec();
    let sha = blobs.put(pdf.clone());
    let cfg = ConnectorsConfig::from_yaml(&format!(
        "connectors:\n  kintone: {{ type: kintone, base_url: '{base}', app: 1, token: {DEMO_TOKEN} }}\n"
    ))
    .unwrap();
    let c = Connectors::with_blobs(&cfg, std::sync::Arc::new(blobs));
    let file = json!({"name": "契約書.pdf", "content_type": "application/pdf", "size": pdf.len(), "sha256": sha});
    run(&c, "kintone.update", "u", 1, json!({"id": 1, "record": {"k_契約書": file}})).await.unwrap();
    let got = run(&c, "kintone.get", "g", 1, json!({"id": 1})).await.unwrap();
    let f = &got["record"]["k_契約書"][0];
    assert_eq!((f["name"].clone(), f["size"].clone()), (json!("契約書.pdf"), json!(pdf.len().to_string())), "{got}");
    let key = f["fileKey"].as_str().unwrap();
    let bytes = emu.read(|st| st.file(key).unwrap().bytes());
    assert_eq!(bytes, pdf);
    // A list of files, on add; a missing blob is a clear fatal error.
    let added = run(&c, "kintone.add", "a", 1, json!({"record": {"k_id": "F-1", "k_契約書": [file.clone(), file]}}))
        .await
        .unwrap();
    let id: u64 = added["id"].as_str().unwrap().parse().unwrap();
    assert_eq!(emu.record(1, id).unwrap()["k_契約書"]["value"].as_array().unwrap().len(), 2);
    let missing = json!({"name": "x.pdf", "sha256": "0".repeat(64)});
    let e = run(&c, "kintone.update", "u2", 1, json!({"id": 1, "record": {"k_契約書": missing}})).await.unwrap_err();
    assert!(matches!(&e, ConnectorError::Fatal(m) if m.contains("k_契約書") && m.contains("x.pdf")), "{e:?}");
}

/// Issue 15.9: messages in Japanese unless `Accept-Language: en`.
#[tokio::test]
async fn messages_follow_accept_language() {
    let emu = Emulator::in_memory();
    let base = serve(&emu).await;
    let http = reqwest::Client::new();
    let ask = |lang: Option<&str>| {
        let mut r = http
            .post(format!("{base}/k/v1/record.json"))
            .header("X-Cybozu-API-Token", DEMO_TOKEN)
            .json(&json!({"record": {}}));
        if let Some(l) = lang {
            r = r.header("Accept-Language", l);
        }
        r.send()
    };
    let ja: Value = ask(None).await.unwrap().json().await.unwrap();
    let en_resp = ask(Some("en-US,en;q=0.9")).await.unwrap();
    assert_eq!(en_resp.status(), 400);
    let en: Value = en_resp.json().await.unwrap();
    assert_eq!(ja["code"], en["code"]);
    assert_eq!(ja["errors"]["app"]["messages"][0], "必須です。", "{ja}");
    assert_eq!(en["errors"]["app"]["messages"][0], "Required field.", "{en}");
    assert_eq!(en["message"], "Missing or invalid input.");
    assert!(en["id"].is_string());
}

/// Issue 15.9: fields have a `defaultValue` (a radio button always has one) that
/// a new record takes when it does not give the field.
#[tokio::test]
async fn new_records_take_field_default_values() {
    let emu = Emulator::in_memory();
    let base = serve(&emu).await;
    let c = connectors(&format!(
        "connectors:\n  kintone: {{ type: kintone, base_url: '{base}', app: 1, token: {DEMO_TOKEN} }}\n"
    ));
    let added = run(&c, "kintone.add", "a", 1, json!({"record": {"k_id": "D-1"}})).await.unwrap();
    let id: u64 = added["id"].as_str().unwrap().parse().unwrap();
    let rec = emu.record(1, id).unwrap();
    assert_eq!(rec["k_ステータス"]["value"], json!("未対応"), "a radio button's first option");
    assert_eq!(rec["k_プラン"]["value"], json!("ライト"));
    assert_eq!(rec["k_氏名"]["value"], json!(""));
    let fields: Value = reqwest::Client::new()
        .get(format!("{base}/k/v1/app/form/fields.json?app=1"))
        .header("X-Cybozu-API-Token", DEMO_TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(fields["properties"]["k_ステータス"]["defaultValue"], json!("未対応"), "{fields}");
    assert_eq!(fields["properties"]["k_契約書"]["defaultValue"], json!([]));
}

/// Issue 15.9: a body that is not sent as JSON is refused (multipart only for files).
#[tokio::test]
async fn bodies_must_be_sent_as_json() {
    let emu = Emulator::in_memory();
    let base = serve(&emu).await;
    let http = reqwest::Client::new();
    let body = r#"{"app":1,"record":{"k_id":{"value":"T-1"}}}"#;
    let send = |ct: &'static str| {
        http.post(format!("{base}/k/v1/record.json"))
            .header("X-Cybozu-API-Token", DEMO_TOKEN)
            .header("Content-Type", ct)
            .body(body)
            .send()
    };
    let bad = send("text/plain").await.unwrap();
    assert_eq!(bad.status(), 415);
    let v: Value = bad.json().await.unwrap();
    assert_eq!(v["code"], "CB_IJ01");
    assert_eq!(send("application/json; charset=utf-8").await.unwrap().status(), 200);
}

/// Issue 15.8: `kintone.update` by `update_key` (a unique field) instead of `id`.
#[tokio::test]
async fn update_by_a_unique_key() {
    let emu = Emulator::in_memory();
    let base = serve(&emu).await;
    let c = connectors(&format!(
        "connectors:\n  kintone: {{ type: kintone, base_url: '{base}', app: 1, token: {DEMO_TOKEN} }}\n"
    ));
    let input = json!({"update_key": {"field": "k_id", "value": "C-0002"}, "record": {"k_ステータス": "対応要"}});
    let r = run(&c, "kintone.update", "u", 1, input).await.unwrap();
    assert_eq!(r["id"], json!("2"), "{r}");
    assert_eq!(emu.record(1, 2).unwrap()["k_ステータス"]["value"], json!("対応要"));
    let none = json!({"update_key": {"field": "k_id", "value": "C-9999"}, "record": {"k_氏名": "x"}});
    let e = run(&c, "kintone.update", "u", 1, none).await.unwrap_err();
    assert!(matches!(&e, ConnectorError::Business { code, .. } if code == "GAIA_RE20"), "{e:?}");
}
