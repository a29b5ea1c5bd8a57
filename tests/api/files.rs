//! File variables over HTTP: upload with the variable's rules enforced while the
//! body streams, start and complete with the returned reference, download by those
//! who may see the instance.

use crate::common::*;
use serde_json::{json, Value};

const CONTRACT: &str = r#"
id: contract-file
name: 契約書の確認
lanes:
  申請者: { groups: [staff] }
  上長: { groups: [managers] }
variables:
  件名: { type: string, required: true }
  契約書: { type: file, required: true, content_types: [application/pdf], max_size: 1048576 }
  添付: { type: file }
start: { next: 確認 }
nodes:
  確認:
    user_task: 契約書を確認する
    lane: 上長
    form: { 件名: readonly, 契約書: readonly, 添付: optional }
    next: done
  done: { end: }
"#;

fn pdf(body: &str) -> Vec<u8> {
    format!("%PDF-1.7\n{body}\n%%EOF\n").into_bytes()
}

async fn upload(api: &Api, token: &str, var: &str, name: &str, ty: &str, bytes: Vec<u8>) -> crate::common::Resp {
    let path = format!("/api/v1/files?process=contract-file&variable={var}&name={}", urlencode(name));
    api.post_raw(token, &path, ty, bytes).await
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| if b.is_ascii_alphanumeric() || b == b'.' { (b as char).to_string() } else { format!("%{b:02X}") })
        .collect()
}

#[tokio::test]
async fn upload_start_and_download_a_contract_pdf() {
    let api = Api::start(sample_users()).await;
    api.engine.deploy("contract.yaml", CONTRACT).unwrap();
    let file = upload(&api, SATO, "契約書", "業務委託契約書.pdf", "application/pdf", pdf("本文")).await.expect(201);
    assert_eq!(file["name"], "業務委託契約書.pdf");
    assert_eq!(file["created_by"], "sato");
    assert_eq!(file["size"], pdf("本文").len());
    let inst = api
        .post(
            SATO,
            "/api/v1/instances",
            json!({ "process": "contract-file", "variables": { "件名": "委託", "契約書": file } }),
        )
        .await
        .expect(201);
    let id = inst["id"].as_u64().unwrap();
    assert_eq!(inst["variables"]["契約書"]["sha256"], file["sha256"]);

    let got = api
        .http
        .get(format!("{}/api/v1/instances/{id}/files/契約書", api.base))
        .bearer_auth(SATO)
        .send()
        .await
        .unwrap();
    assert_eq!(got.status(), 200);
    assert_eq!(got.headers()["content-type"], "application/pdf");
    let disposition = got.headers()["content-disposition"].to_str().unwrap().to_string();
    assert!(disposition.contains("filename*=UTF-8''%E6%A5%AD"), "{disposition}");
    assert_eq!(got.bytes().await.unwrap().as_ref(), pdf("本文").as_slice());

    // The manager sees the instance through the task in the inbox and may download.
    api.get(TANAKA, &format!("/api/v1/instances/{id}/files/契約書")).await.expect_text(200);
    // Someone with no part in it gets 404, as for an unknown instance.
    api.get(KATO, &format!("/api/v1/instances/{id}/files/契約書")).await.error(404, "unknown-instance");
    // A variable without a file is 404 too.
    api.get(SATO, &format!("/api/v1/instances/{id}/files/添付")).await.error(404, "no-file");

    // A task completion may attach a file as well.
    let task = api.task_at(id, "確認").await;
    let extra = upload(&api, TANAKA, "添付", "memo.txt", "text/plain", b"ok".to_vec()).await.expect(201);
    api.post(TANAKA, &format!("/api/v1/tasks/{task}/complete"), json!({ "variables": { "添付": extra } }))
        .await
        .expect(200);
    let back = api.get(SATO, &format!("/api/v1/instances/{id}/files/添付")).await.expect_text(200);
    assert_eq!(back, "ok");
    api.finish().await;
}

#[tokio::test]
async fn too_large_and_non_pdf_uploads_are_refused_before_anything_is_stored() {
    let api = Api::start(sample_users()).await;
    api.engine.deploy("contract.yaml", CONTRACT).unwrap();
    // 12 MB against a 1 MiB variable: refused once the limit is passed.
    let big = pdf(&"x".repeat(12 * 1024 * 1024));
    upload(&api, SATO, "契約書", "big.pdf", "application/pdf", big).await.error(413, "file-too-large");
    // A ZIP declared as PDF: refused by its first bytes.
    upload(&api, SATO, "契約書", "a.pdf", "application/pdf", b"PK\x03\x04....".to_vec()).await.error(422, "not-a-pdf");
    // A PDF cut short.
    upload(&api, SATO, "契約書", "a.pdf", "application/pdf", b"%PDF-1.7 ...".to_vec()).await.error(422, "not-a-pdf");
    // A type the variable does not take.
    upload(&api, SATO, "契約書", "a.docx", "application/msword", b"x".to_vec())
        .await
        .error(422, "content-type-not-accepted");
    // Not a file variable; a bad name.
    upload(&api, SATO, "件名", "a.pdf", "application/pdf", pdf("")).await.error(422, "invalid-data");
    upload(&api, SATO, "契約書", "../etc/passwd", "application/pdf", pdf("")).await.error(422, "bad-file-name");
    assert_eq!(api.engine.collect_files(std::time::Duration::ZERO).unwrap(), 0, "nothing was stored");
    api.finish().await;
}

#[tokio::test]
async fn a_reference_must_match_stored_content() {
    let api = Api::start(sample_users()).await;
    api.engine.deploy("contract.yaml", CONTRACT).unwrap();
    let file = upload(&api, SATO, "契約書", "c.pdf", "application/pdf", pdf("a")).await.expect(201);
    let start = |f: Value| json!({ "process": "contract-file", "variables": { "件名": "x", "契約書": f } });
    // Content nobody uploaded.
    let mut forged = file.clone();
    forged["sha256"] = json!("0".repeat(64));
    let err = api.post(SATO, "/api/v1/instances", start(forged)).await.error(422, "invalid-data");
    assert!(err["message"].as_str().unwrap().contains("upload it first"), "{err}");
    // A size that is not the content's.
    let mut resized = file.clone();
    resized["size"] = json!(3);
    api.post(SATO, "/api/v1/instances", start(resized)).await.error(422, "invalid-data");
    // A non-PDF uploaded for another variable, then claimed to be a PDF.
    let text = upload(&api, SATO, "添付", "t.txt", "text/plain", b"plain".to_vec()).await.expect(201);
    let mut disguised = text.clone();
    disguised["content_type"] = json!("application/pdf");
    let err = api.post(SATO, "/api/v1/instances", start(disguised)).await.error(422, "invalid-data");
    assert!(err["message"].as_str().unwrap().contains("not a PDF"), "{err}");
    // Stray fields and a plain string are refused by the type check.
    let mut extra = file.clone();
    extra["path"] = json!("/etc/passwd");
    api.post(SATO, "/api/v1/instances", start(extra)).await.error(422, "invalid-data");
    api.post(SATO, "/api/v1/instances", start(json!("c.pdf"))).await.error(422, "invalid-data");
    api.finish().await;
}

#[tokio::test]
async fn unreferenced_uploads_are_collected_and_referenced_ones_kept() {
    let dir = tempfile::tempdir().unwrap();
    let api = Api::start_durable(sample_users(), dir).await;
    api.engine.deploy("contract.yaml", CONTRACT).unwrap();
    let used = upload(&api, SATO, "契約書", "c.pdf", "application/pdf", pdf("used")).await.expect(201);
    let unused = upload(&api, SATO, "契約書", "d.pdf", "application/pdf", pdf("unused")).await.expect(201);
    api.post(
        SATO,
        "/api/v1/instances",
        json!({ "process": "contract-file", "variables": { "件名": "x", "契約書": used } }),
    )
    .await
    .expect(201);
    assert_eq!(api.engine.collect_files(std::time::Duration::from_secs(3600)).unwrap(), 0, "young uploads stay");
    assert_eq!(api.engine.collect_files(std::time::Duration::ZERO).unwrap(), 1);
    assert!(api.engine.blobs().contains(used["sha256"].as_str().unwrap()));
    assert!(!api.engine.blobs().contains(unused["sha256"].as_str().unwrap()));
    api.finish().await;
}

/// A start and a completion may carry their files in one `multipart/form-data`
/// request; the files are checked while they stream, as on the upload endpoint.
#[tokio::test]
async fn start_and_complete_with_files_in_one_multipart_request() {
    use reqwest::multipart::{Form, Part};
    // Part names go as raw UTF-8 (`percent_encode_noop`), as browsers send them.
    let api = Api::start(sample_users()).await;
    api.engine.deploy("contract.yaml", CONTRACT).unwrap();
    let pdf_part = |body: &str| Part::bytes(pdf(body)).file_name("契約書.pdf").mime_str("application/pdf").unwrap();
    let send = |path: &str, token: &str, form: Form| {
        api.http.post(format!("{}{path}", api.base)).bearer_auth(token).multipart(form).send()
    };
    let form = Form::new()
        .percent_encode_noop()
        .text("process", "contract-file")
        .text("variables", json!({ "件名": "委託" }).to_string())
        .part("契約書", pdf_part("本文"));
    let resp = send("/api/v1/instances", SATO, form).await.unwrap();
    assert_eq!(resp.status(), 201);
    let inst: Value = resp.json().await.unwrap();
    assert_eq!(inst["variables"]["契約書"]["name"], "契約書.pdf");
    assert_eq!(inst["variables"]["契約書"]["created_by"], "sato");
    let id = inst["id"].as_u64().unwrap();
    assert_eq!(
        api.get(SATO, &format!("/api/v1/instances/{id}/files/契約書")).await.expect_text(200),
        String::from_utf8(pdf("本文")).unwrap()
    );

    // A non-PDF for a PDF variable, a file part before `process`, an unknown text part.
    let bad = Form::new()
        .percent_encode_noop()
        .text("process", "contract-file")
        .part("契約書", Part::bytes(b"PK..".to_vec()).file_name("a.pdf").mime_str("application/pdf").unwrap());
    let r = send("/api/v1/instances", SATO, bad).await.unwrap();
    assert_eq!(r.status(), 422);
    assert_eq!(r.json::<Value>().await.unwrap()["code"], "not-a-pdf");
    let early = Form::new().percent_encode_noop().part("契約書", pdf_part("x")).text("process", "contract-file");
    let r = send("/api/v1/instances", SATO, early).await.unwrap();
    assert_eq!(r.json::<Value>().await.unwrap()["code"], "process-first");
    let stray = Form::new().percent_encode_noop().text("process", "contract-file").text("oops", "1");
    let r = send("/api/v1/instances", SATO, stray).await.unwrap();
    assert_eq!(r.json::<Value>().await.unwrap()["code"], "unknown-part");

    // The manager completes with an attachment.
    let task = api.task_at(id, "確認").await;
    let form = Form::new()
        .percent_encode_noop()
        .part("添付", Part::bytes(b"memo".to_vec()).file_name("memo.txt").mime_str("text/plain").unwrap());
    let r = send(&format!("/api/v1/tasks/{task}/complete"), TANAKA, form).await.unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    assert_eq!(api.get(SATO, &format!("/api/v1/instances/{id}/files/添付")).await.expect_text(200), "memo");
    api.finish().await;
}

/// The large limit of the multipart routes is for files only: a JSON body sent in
/// chunks (no Content-Length) is still cut at the JSON limit.
#[tokio::test]
async fn json_bodies_of_the_form_routes_keep_the_json_limit() {
    let api = Api::start(sample_users()).await;
    let big =
        format!("{{\"process\": \"expense-approval\", \"variables\": {{\"内容\": \"{}\"}}}}", "x".repeat(3 << 20));
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        big.into_bytes().chunks(64 * 1024).map(|c| Ok(c.to_vec())).collect();
    let body = reqwest::Body::wrap_stream(futures_util::stream::iter(chunks));
    let resp = api
        .http
        .post(format!("{}/api/v1/instances", api.base))
        .bearer_auth(SATO)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 413);
    assert_eq!(resp.json::<Value>().await.unwrap()["code"], "body-too-large");
    api.finish().await;
}
