//! The simulated KIM Attachment Service against AttachmentService.yaml 2.4.0, driven
//! by curl as an independent HTTP client: upload (multipart, Basic auth), download
//! with the recipient header, every documented refusal, delete.

use std::process::Command;

const A: &str = "a@x.kim.test";
const B: &str = "b@x.kim.test";
const C: &str = "c@x.kim.test";

/// curl with the CA; returns (HTTP status, body).
fn curl(ca: &std::path::Path, args: &[&str]) -> (u16, Vec<u8>) {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "30", "--cacert"])
        .arg(ca)
        .args(["-o", "-", "-w", "\n%{http_code}"])
        .args(args)
        .output()
        .expect("curl");
    let mut body = out.stdout;
    let nl = body.iter().rposition(|b| *b == b'\n').expect("status line");
    let status = String::from_utf8_lossy(&body[nl + 1..])
        .trim()
        .parse()
        .unwrap_or(0);
    assert!(
        status != 0,
        "curl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    body.truncate(nl);
    (status, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_kas_simulator_follows_the_yaml() {
    let dir = tempfile::tempdir().unwrap();
    let fd_dir = dir.path().join("fd");
    std::fs::create_dir_all(&fd_dir).unwrap();
    // a's KAS quota: 100 KiB
    std::fs::write(
        fd_dir.join("limits.json"),
        format!(r#"{{"{A}": {{"kasQuota": 102400}}}}"#),
    )
    .unwrap();
    let fd = kim_cm::testbed::fachdienst::start(&fd_dir, 0, 0, &[A, B, C])
        .await
        .unwrap();
    let ca = fd.tls.ca_cert.clone();
    let base = kim_cm::testbed::kas::base_url(fd.kas);
    let pw = |i: usize| format!("{}:{}", fd.accounts[i].address, fd.accounts[i].password);
    let data: Vec<u8> = (0..60_000u32).map(|i| (i % 251) as u8).collect();
    let file = dir.path().join("blob.enc");
    std::fs::write(&file, &data).unwrap();
    let upload = |user: &str, declared: usize, expires: &str| {
        let attachment = format!(
            "attachment=@{};type=application/octet-stream;headers=\"Content-Length: {declared}\"",
            file.display()
        );
        let expires = format!("expires={expires}");
        curl(
            &ca,
            &[
                "-u",
                user,
                "-X",
                "POST",
                &format!("{base}/attachment/"),
                "--form-string",
                "messageID=<m1@x.kim.test>",
                "--form-string",
                &format!("recipients={B}"),
                "--form-string",
                &format!("recipients={C}"),
                "--form-string",
                &expires,
                "-F",
                &attachment,
            ],
        )
    };
    let later = "Thu, 24 Dec 2099 10:00:00 +0000";

    // 201 with a shared link
    let (status, body) = upload(&pw(0), data.len(), later);
    assert_eq!(status, 201, "{}", String::from_utf8_lossy(&body));
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let link = v["sharedLink"].as_str().unwrap().to_string();
    assert!(link.starts_with(&base), "{link}");

    // download by a recipient: the same bytes; HEAD answers 200
    let (status, got) = curl(&ca, &["-H", &format!("recipient: {B}"), &link]);
    assert_eq!((status, got == data), (200, true));
    let (status, _) = curl(&ca, &["-I", "-H", &format!("recipient: {C}"), &link]);
    assert_eq!(status, 200);
    // 400 without the recipient header, 403 for someone else
    assert_eq!(curl(&ca, &[&link]).0, 400);
    assert_eq!(curl(&ca, &["-H", &format!("recipient: {A}"), &link]).0, 403);
    // 429 after the download limit
    for _ in 1..kim_cm::testbed::kas::DOWNLOAD_LIMIT {
        assert_eq!(curl(&ca, &["-H", &format!("recipient: {B}"), &link]).0, 200);
    }
    assert_eq!(curl(&ca, &["-H", &format!("recipient: {B}"), &link]).0, 429);
    // C still has downloads left
    assert_eq!(curl(&ca, &["-H", &format!("recipient: {C}"), &link]).0, 200);

    // refusals of uploads: 401, 400 (expired, wrong length), 413, 507
    assert_eq!(upload(&format!("{B}:wrong"), data.len(), later).0, 401);
    assert_eq!(
        upload(&pw(1), data.len(), "Mon, 1 Jan 2001 10:00:00 +0000").0,
        400
    );
    assert_eq!(upload(&pw(1), data.len() + 1, later).0, 400);
    assert_eq!(upload(&pw(1), 800_000_000, later).0, 413);
    // a has 60 000 of 102 400 bytes in use: a second upload exceeds the quota
    assert_eq!(upload(&pw(0), data.len(), later).0, 507);
    // b has no quota set
    assert_eq!(upload(&pw(1), data.len(), later).0, 201);

    // delete: only the uploader, then 404 for everyone
    assert_eq!(curl(&ca, &["-u", &pw(1), "-X", "DELETE", &link]).0, 404);
    assert_eq!(
        curl(&ca, &["-u", &format!("{A}:wrong"), "-X", "DELETE", &link]).0,
        401
    );
    assert_eq!(curl(&ca, &["-u", &pw(0), "-X", "DELETE", &link]).0, 200);
    assert_eq!(curl(&ca, &["-H", &format!("recipient: {C}"), &link]).0, 404);
    assert_eq!(fd.kas_state.count(), 1, "only b's upload is left");
}
