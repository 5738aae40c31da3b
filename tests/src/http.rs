//! Plain HTTP for tests: status and body text, errors as statuses rather than `Err`.

use std::time::Duration;

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(20)))
        .http_status_as_error(false)
        .build()
        .into()
}

/// GET `url`: (status, body).
pub fn get(url: &str) -> (u16, String) {
    let mut r = agent()
        .get(url)
        .call()
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    let status = r.status().as_u16();
    (status, r.body_mut().read_to_string().unwrap_or_default())
}

/// POST `body` to `url`: (status, body).
pub fn post(url: &str, content_type: &str, body: &[u8]) -> (u16, String) {
    let mut r = agent()
        .post(url)
        .header("Content-Type", content_type)
        .send(body)
        .unwrap_or_else(|e| panic!("POST {url}: {e}"));
    let status = r.status().as_u16();
    (status, r.body_mut().read_to_string().unwrap_or_default())
}

/// GET `url` as JSON (asserting a 200).
pub fn get_json(url: &str) -> serde_json::Value {
    let (status, body) = get(url);
    assert_eq!(status, 200, "GET {url}: {body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {url}: {e}: {body}"))
}

/// GET `url` with `Authorization: Bearer secret`: (status, body).
pub fn get_with_token(url: &str, secret: &str) -> (u16, String) {
    let mut r = agent()
        .get(url)
        .header("Authorization", &format!("Bearer {secret}"))
        .call()
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    let status = r.status().as_u16();
    (status, r.body_mut().read_to_string().unwrap_or_default())
}

/// POST `body` as JSON to `url` with `Authorization: Bearer secret`: (status, body).
pub fn post_with_token(url: &str, secret: &str, body: &[u8]) -> (u16, String) {
    let mut r = agent()
        .post(url)
        .header("Content-Type", "application/json")
        .header("Authorization", &format!("Bearer {secret}"))
        .send(body)
        .unwrap_or_else(|e| panic!("POST {url}: {e}"));
    let status = r.status().as_u16();
    (status, r.body_mut().read_to_string().unwrap_or_default())
}

/// POST `body` to `url` with these headers: (status, body).
pub fn post_with(url: &str, headers: &[(&str, &str)], body: &[u8]) -> (u16, String) {
    let mut request = agent().post(url);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let mut r = request
        .send(body)
        .unwrap_or_else(|e| panic!("POST {url}: {e}"));
    let status = r.status().as_u16();
    (status, r.body_mut().read_to_string().unwrap_or_default())
}

/// GET `url` with these headers: (status, body).
pub fn get_with(url: &str, headers: &[(&str, &str)]) -> (u16, String) {
    let mut request = agent().get(url);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let mut r = request.call().unwrap_or_else(|e| panic!("GET {url}: {e}"));
    let status = r.status().as_u16();
    (status, r.body_mut().read_to_string().unwrap_or_default())
}
