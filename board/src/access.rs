//! Who may use the board. With `BOARD_TOKEN` unset the board is open (and says so on screen;
//! `wardwatch up` then listens on 127.0.0.1 only). With it set:
//! - browsers sign in at `/signin` with their name and the token, and get a session cookie
//!   (`HttpOnly`, `SameSite=Strict`, `Secure` when the request came over TLS as a proxy says with
//!   `X-Forwarded-Proto: https`) — an `EventSource` cannot send a bearer header;
//! - programs send `Authorization: Bearer <token>`;
//! - Acknowledge needs the session's CSRF token in `X-CSRF-Token` (the page has it).
//!
//! Sessions are signed, not stored: an HMAC-SHA256 under a key derived from the token, so every
//! board replica accepts every other's sessions and changing the token signs everyone out.
//! Comparisons are constant-time. The token never reaches a log or an error message.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::Utc;
use http::{HeaderMap, header};
use ring::hmac;
use subtle::ConstantTimeEq;
use wardwatch_runtime::Secret;

pub const COOKIE: &str = "wardwatch_session";
/// A session lasts a long shift.
const SESSION_SECONDS: i64 = 14 * 3600;

pub enum Access {
    Open,
    Token { token: Secret, key: hmac::Key },
}

/// Who is asking.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// Nothing configured: anyone.
    Anyone,
    /// A browser session: the signed-in name, and the cookie value (for the CSRF token).
    Session { name: String, cookie: String },
    /// A program with the bearer token.
    Program,
    /// Not signed in.
    Nobody,
}

impl Access {
    pub fn new(token: Option<Secret>) -> Self {
        match token {
            None => Access::Open,
            Some(token) => {
                let key = hmac::Key::new(
                    hmac::HMAC_SHA256,
                    format!("wardwatch-board:{}", token.expose()).as_bytes(),
                );
                Access::Token { token, key }
            }
        }
    }

    pub fn is_open(&self) -> bool {
        matches!(self, Access::Open)
    }

    /// Whether `candidate` is the board token (constant-time).
    pub fn token_matches(&self, candidate: &str) -> bool {
        match self {
            Access::Open => false,
            Access::Token { token, .. } => bool::from(candidate.as_bytes().ct_eq(token.expose().as_bytes())),
        }
    }

    pub fn caller(&self, headers: &HeaderMap) -> Caller {
        let Access::Token { key, .. } = self else {
            return Caller::Anyone;
        };
        if let Some(bearer) = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
        {
            return if self.token_matches(bearer.trim()) {
                Caller::Program
            } else {
                Caller::Nobody
            };
        }
        let Some(cookie) = cookie(headers, COOKIE) else {
            return Caller::Nobody;
        };
        match verify(key, &cookie) {
            Some(name) => Caller::Session { name, cookie },
            None => Caller::Nobody,
        }
    }

    /// A session cookie value for `name`.
    pub fn session(&self, name: &str) -> Option<String> {
        let Access::Token { key, .. } = self else { return None };
        let expires = Utc::now().timestamp() + SESSION_SECONDS;
        let body = format!("{}.{expires}", URL_SAFE_NO_PAD.encode(name.as_bytes()));
        let tag = hmac::sign(key, body.as_bytes());
        Some(format!("{body}.{}", URL_SAFE_NO_PAD.encode(tag.as_ref())))
    }

    /// The CSRF token of a session: derived from its cookie, so nothing is stored.
    pub fn csrf(&self, cookie: &str) -> Option<String> {
        let Access::Token { key, .. } = self else { return None };
        let tag = hmac::sign(key, format!("csrf:{cookie}").as_bytes());
        Some(URL_SAFE_NO_PAD.encode(tag.as_ref()))
    }

    /// Whether a state-changing request from `caller` carries what it must.
    pub fn csrf_ok(&self, caller: &Caller, headers: &HeaderMap) -> bool {
        match caller {
            Caller::Anyone | Caller::Program => true,
            Caller::Nobody => false,
            Caller::Session { cookie, .. } => {
                let sent = headers.get("x-csrf-token").map(|v| v.as_bytes()).unwrap_or_default();
                self.csrf(cookie)
                    .is_some_and(|want| bool::from(sent.ct_eq(want.as_bytes())))
            }
        }
    }
}

/// `Set-Cookie` for a session (or to end one, with `None`).
pub fn set_cookie(value: Option<&str>, secure: bool) -> String {
    let secure = if secure { "; Secure" } else { "" };
    match value {
        Some(v) => format!("{COOKIE}={v}; Path=/; HttpOnly; SameSite=Strict; Max-Age={SESSION_SECONDS}{secure}"),
        None => format!("{COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0{secure}"),
    }
}

/// Whether the request reached us over TLS (directly or as a proxy in front says).
pub fn over_tls(headers: &HeaderMap) -> bool {
    headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|p| p.eq_ignore_ascii_case("https"))
}

fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_owned())
}

fn verify(key: &hmac::Key, cookie: &str) -> Option<String> {
    let (body, tag) = cookie.rsplit_once('.')?;
    let tag = URL_SAFE_NO_PAD.decode(tag).ok()?;
    hmac::verify(key, body.as_bytes(), &tag).ok()?;
    let (name, expires) = body.split_once('.')?;
    if expires.parse::<i64>().ok()? < Utc::now().timestamp() {
        return None;
    }
    String::from_utf8(URL_SAFE_NO_PAD.decode(name).ok()?).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn with(name: &str, value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            http::HeaderName::from_bytes(name.as_bytes()).expect("name"),
            HeaderValue::from_str(value).expect("value"),
        );
        h
    }

    #[test]
    fn a_signed_session_names_its_user_and_a_tampered_one_is_refused() {
        let access = Access::new(Some(Secret::new("a-board-token-of-length")));
        let cookie = access.session("Sister Jones").expect("session");
        let caller = access.caller(&with("cookie", &format!("other=1; {COOKIE}={cookie}")));
        assert_eq!(
            caller,
            Caller::Session {
                name: "Sister Jones".into(),
                cookie: cookie.clone()
            }
        );
        let forged = cookie.replacen(&cookie[..4], "QUFB", 1);
        assert_eq!(
            access.caller(&with("cookie", &format!("{COOKIE}={forged}"))),
            Caller::Nobody
        );
        let other = Access::new(Some(Secret::new("another-token-entirely")));
        assert_eq!(
            other.caller(&with("cookie", &format!("{COOKIE}={cookie}"))),
            Caller::Nobody
        );
    }

    #[test]
    fn bearer_tokens_and_csrf() {
        let access = Access::new(Some(Secret::new("a-board-token-of-length")));
        assert_eq!(
            access.caller(&with("authorization", "Bearer a-board-token-of-length")),
            Caller::Program
        );
        assert_eq!(access.caller(&with("authorization", "Bearer wrong")), Caller::Nobody);
        assert_eq!(access.caller(&HeaderMap::new()), Caller::Nobody);
        let cookie = access.session("x").expect("session");
        let caller = access.caller(&with("cookie", &format!("{COOKIE}={cookie}")));
        let csrf = access.csrf(&cookie).expect("csrf");
        assert!(access.csrf_ok(&caller, &with("x-csrf-token", &csrf)));
        assert!(!access.csrf_ok(&caller, &with("x-csrf-token", "nope")));
        assert!(!access.csrf_ok(&caller, &HeaderMap::new()));
        assert_eq!(Access::new(None).caller(&HeaderMap::new()), Caller::Anyone);
    }
}
