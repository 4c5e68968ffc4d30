//! Clients, access tokens, passwords and quotas. Needs no models, so the admin commands
//! (`facegate client ...`) use it on the daemon's data folder directly.
//!
//! A token is 43 URL-safe characters; its first 12 are its public id (the key it is
//! stored under) and only its SHA-256 is stored, compared in constant time. Passwords
//! are stored as PBKDF2-HMAC-SHA256 with a random salt.
//!
//! A token has a [`Scope`]: full power (every endpoint of its client), or `kiosk` (only
//! the kiosk screen's routes of its client: safe to put in the screen's URL). A kiosk
//! token reads `kiosk_` + 43 characters and is stored under `kiosk_` + its next 12, with
//! the scope in its record: the record decides, the prefix only keeps binaries that
//! predate scopes from finding it (they refuse it rather than grant full power).
//!
//! API hits are counted in memory and added to the stored counters in batches
//! ([`Accounts::flush_hits`]: every `store.hits_flush_secs` and at shutdown), so that a
//! read request (identify, verify, compare) commits nothing and syncs nothing to disk.
//! The quota check adds the stored count and the unflushed hits, so it holds across
//! restarts; it reads them from memory (`hits.rs`), so no request waits while a flush
//! syncs. A crash (power loss, SIGKILL) loses the hits counted since the last flush:
//! at most `hits_flush_secs` of them, which a client gets for free. Every other write
//! here (clients, tokens) is durable before it returns.

use std::net::IpAddr;
use std::sync::Arc;

use base64::engine::general_purpose::{STANDARD_NO_PAD, URL_SAFE_NO_PAD};
use base64::Engine;
use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::commit::WritePath;
use super::hits::HitBook;
use super::login_throttle::LoginThrottle;
use super::{Error, Quota, QuotaKind};
use crate::store::{self, ClientRecord, Counters, Store, TokenRecord};

const TOKEN_ID_LEN: usize = 12;
const PBKDF2_ROUNDS: u32 = 200_000;
/// Tokens from `/oauth/client/token` a client may hold at once; issuing one more
/// revokes the oldest. Tokens made by `facegate client` do not count and are kept.
pub const MAX_OAUTH_TOKENS: usize = 10;
/// Password hashes of this scheme run PBKDF2 over the password's length (u32, big
/// endian) and bytes: HMAC pads a short key with zeros, so over the bare password
/// "hunter2" and "hunter2\0" would hash alike.
const SCHEME: &str = "pbkdf2-sha256-len";
/// The first scheme (bare password): still verified, for hashes stored before.
const SCHEME_BARE: &str = "pbkdf2-sha256";

/// What a token may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// Every endpoint of its client.
    Full,
    /// Only the kiosk routes (events, frame) of its client.
    Kiosk,
}

impl Scope {
    const KIOSK_PREFIX: &'static str = "kiosk_";

    /// `full` or `kiosk` (the `--scope` values of `facegate client add`).
    pub fn parse(text: &str) -> Option<Scope> {
        match text {
            "full" => Some(Scope::Full),
            "kiosk" => Some(Scope::Kiosk),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Full => "full",
            Scope::Kiosk => "kiosk",
        }
    }

    /// The scope a stored record names; an unknown name (a newer binary's) is `None`
    /// and its token is refused.
    fn of_record(record: &TokenRecord) -> Option<Scope> {
        match record.scope.as_deref() {
            None => Some(Scope::Full),
            Some(name) => Scope::parse(name),
        }
    }
}

/// Who a token speaks for and what it may do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Principal {
    pub client: String,
    pub scope: Scope,
}

/// What get-counters reports for an unlimited quota (fits a signed 32-bit integer).
pub const UNLIMITED_REPORTED: u64 = i32::MAX as u64;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientSummary {
    pub name: String,
    pub created_at: u64,
    pub tokens: usize,
    pub has_password: bool,
    pub galleries: u64,
    pub faces: u64,
    pub api_hits: u64,
}

/// Remaining quota, as client/get-counters reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Remaining {
    pub api_hits: u64,
    pub faces: u64,
    pub galleries: u64,
}

#[derive(Debug)]
pub struct Accounts {
    /// For reads; writes go through `writes` (gallery/commit.rs).
    store: Arc<Store>,
    writes: Arc<WritePath>,
    quota: Quota,
    /// API hits per client, saved and not yet saved.
    hits: HitBook,
    logins: LoginThrottle,
}

impl Accounts {
    /// Accounts on their own (the admin commands): their writes touch no index and no
    /// outbox.
    pub fn new(store: Arc<Store>, quota: Quota) -> Accounts {
        let writes = Arc::new(WritePath::accounts_only(store.clone()));
        Accounts::sharing(store, writes, quota)
    }

    /// Accounts writing through a gallery's write path (one commit order per store).
    pub(super) fn sharing(store: Arc<Store>, writes: Arc<WritePath>, quota: Quota) -> Accounts {
        Accounts {
            store,
            writes,
            quota,
            hits: HitBook::default(),
            logins: LoginThrottle::default(),
        }
    }

    /// Creates a client and returns its first token.
    pub fn add_client(&self, name: &str, password: Option<&str>) -> Result<String, Error> {
        check_name(name)?;
        let password_hash = password.map(hash_password);
        let token = new_token(Scope::Full);
        self.writes.commit(|w| {
            if w.reader().client(name)?.is_some() {
                return Err(Error::ClientExists(name.to_string()));
            }
            w.put_client(&ClientRecord {
                name: name.to_string(),
                created_at: store::now(),
                password_hash: password_hash.clone(),
            })?;
            put_token(w, name, &token, "cli")?;
            Ok(())
        })?;
        Ok(token)
    }

    /// `facegate client add NAME --scope kiosk`: a new kiosk token for `name`, which is
    /// created (without password, without a full-power token) if it does not exist yet;
    /// the client's other tokens are untouched.
    pub fn add_kiosk_token(&self, name: &str) -> Result<String, Error> {
        check_name(name)?;
        let token = new_token(Scope::Kiosk);
        self.writes.commit(|w| {
            if w.reader().client(name)?.is_none() {
                w.put_client(&ClientRecord {
                    name: name.to_string(),
                    created_at: store::now(),
                    password_hash: None,
                })?;
            }
            put_token(w, name, &token, "cli")
        })?;
        Ok(token)
    }

    pub fn list_clients(&self) -> Result<Vec<ClientSummary>, Error> {
        // The book's totals win for the clients it knows: the store lacks their unsaved
        // hits and, while a flush commits, maybe the batch's.
        let known = self.hits.known_totals();
        self.store.read(|r| {
            let mut out = Vec::new();
            for c in r.clients()? {
                let counters = r.counters(&c.name)?;
                out.push(ClientSummary {
                    tokens: r.tokens_of(&c.name)?.len(),
                    has_password: c.password_hash.is_some(),
                    galleries: counters.galleries,
                    faces: counters.faces,
                    api_hits: known.get(&c.name).copied().unwrap_or(counters.api_hits),
                    name: c.name,
                    created_at: c.created_at,
                });
            }
            Ok(out)
        })
    }

    /// Revokes every token of a client; returns how many there were.
    pub fn revoke_all(&self, name: &str) -> Result<usize, Error> {
        self.writes.commit(|w| {
            if w.reader().client(name)?.is_none() {
                return Err(Error::UnknownClient(name.to_string()));
            }
            let tokens = w.reader().tokens_of(name)?;
            for (id, _) in &tokens {
                w.delete_token(id)?;
            }
            Ok(tokens.len())
        })
    }

    /// Revokes every token of a client and issues a new one.
    pub fn rotate(&self, name: &str) -> Result<String, Error> {
        let token = new_token(Scope::Full);
        self.writes.commit(|w| {
            if w.reader().client(name)?.is_none() {
                return Err(Error::UnknownClient(name.to_string()));
            }
            for (id, _) in w.reader().tokens_of(name)? {
                w.delete_token(&id)?;
            }
            put_token(w, name, &token, "cli")
        })?;
        Ok(token)
    }

    /// The client of a full-power token; a valid token of a narrower scope is
    /// `OutOfScope` (403), anything else `Unauthorized` (401).
    pub fn authenticate(&self, token: &str) -> Result<String, Error> {
        let principal = self.authenticate_any(token)?;
        match principal.scope {
            Scope::Full => Ok(principal.client),
            Scope::Kiosk => Err(Error::OutOfScope),
        }
    }

    /// The client a token of any scope belongs to, and its scope.
    pub fn authenticate_any(&self, token: &str) -> Result<Principal, Error> {
        let token = normalize(token).ok_or(Error::Unauthorized)?;
        let key = token_key(token).ok_or(Error::Unauthorized)?;
        let digest = Sha256::digest(token.as_bytes());
        self.store.read(|r| {
            let Some(record) = r.token(key)? else {
                return Err(Error::Unauthorized);
            };
            let stored = hex_decode(&record.sha256);
            if stored.len() != digest.len() || !bool::from(stored.ct_eq(digest.as_slice())) {
                return Err(Error::Unauthorized);
            }
            if r.client(&record.client)?.is_none() {
                return Err(Error::Unauthorized);
            }
            let scope = Scope::of_record(&record).ok_or(Error::Unauthorized)?;
            // The key's prefix and the record agree, or the record is not trusted.
            if key.starts_with(Scope::KIOSK_PREFIX) != (scope == Scope::Kiosk) {
                return Err(Error::Unauthorized);
            }
            Ok(Principal {
                client: record.client,
                scope,
            })
        })
    }

    /// `/oauth/client/token`: a new token for a client that has a password. Beyond
    /// [`MAX_OAUTH_TOKENS`] of them, the oldest are revoked.
    pub fn issue_token(&self, client: &str, password: &str) -> Result<String, Error> {
        self.issue_token_from(client, password, None)
    }

    /// As [`Accounts::issue_token`], for a request from `peer` (its failed attempts
    /// also count against the address's budget).
    pub fn issue_token_from(
        &self,
        client: &str,
        password: &str,
        peer: Option<IpAddr>,
    ) -> Result<String, Error> {
        self.check_password(client, password, peer)?;
        let token = new_token(Scope::Full);
        self.writes.commit(|w| {
            let mut issued: Vec<(String, TokenRecord)> = w
                .reader()
                .tokens_of(client)?
                .into_iter()
                .filter(|(_, t)| t.origin == "oauth")
                .collect();
            issued.sort_by_key(|(_, t)| t.created_at);
            let excess = (issued.len() + 1).saturating_sub(MAX_OAUTH_TOKENS);
            for (id, _) in issued.iter().take(excess) {
                w.delete_token(id)?;
            }
            put_token(w, client, &token, "oauth")
        })?;
        Ok(token)
    }

    /// `/oauth/token/revoke`: the token stops working (it must belong to the client).
    pub fn revoke_token(&self, token: &str, client: &str, password: &str) -> Result<(), Error> {
        self.revoke_token_from(token, client, password, None)
    }

    /// As [`Accounts::revoke_token`], for a request from `peer`.
    pub fn revoke_token_from(
        &self,
        token: &str,
        client: &str,
        password: &str,
        peer: Option<IpAddr>,
    ) -> Result<(), Error> {
        self.check_password(client, password, peer)?;
        if self.authenticate_any(token)?.client != client {
            return Err(Error::Unauthorized);
        }
        let key = normalize(token)
            .and_then(token_key)
            .ok_or(Error::Unauthorized)?
            .to_string();
        self.writes
            .commit(|w| Ok(w.delete_token(&key).map(|_| ())?))?;
        Ok(())
    }

    /// Within the failed-login budgets (else `TooManyAttempts`, before any hashing),
    /// one password hash whether or not the client exists or has a password (a dummy
    /// hash stands in), so the answer's time does not tell which names exist.
    fn check_password(
        &self,
        client: &str,
        password: &str,
        peer: Option<IpAddr>,
    ) -> Result<(), Error> {
        let attempt = self
            .logins
            .begin(client, peer)
            .map_err(|retry_after_secs| Error::TooManyAttempts { retry_after_secs })?;
        let record = self.store.read(|r| r.client(client))?;
        let ok = match record.and_then(|c| c.password_hash) {
            Some(h) => verify_password(password, &h),
            None => {
                verify_password(password, dummy_hash());
                false
            }
        };
        if !ok {
            return Err(Error::Unauthorized);
        }
        self.logins.succeeded(attempt);
        Ok(())
    }

    /// Counts one API hit in memory (no disk access after the client's first hit);
    /// refuses it when the api_hits quota is used up by the saved and unsaved hits
    /// together. The check and the count are one step: concurrent hits cannot both take
    /// the last one.
    pub fn hit(&self, client: &str) -> Result<(), Error> {
        let counted = self
            .hits
            .count(client, self.quota.api_hits, || self.stored_hits(client))?;
        if !counted {
            return Err(Error::QuotaExhausted(QuotaKind::ApiHits));
        }
        Ok(())
    }

    /// Adds the hits counted in memory to the stored counters in one transaction;
    /// returns how many there were. Called every `store.hits_flush_secs` and at
    /// shutdown. Hits go on being counted (and checked) while the commit syncs; on a
    /// store error the batch is unsaved again, for the next attempt.
    pub fn flush_hits(&self) -> Result<u64, Error> {
        let batch = self.hits.take_batch();
        if batch.is_empty() {
            return Ok(0);
        }
        let committed = self.writes.commit(|w| {
            for (client, hits) in &batch {
                // A client removed since its hits were counted has no counters to add to.
                if w.reader().client(client)?.is_none() {
                    continue;
                }
                let mut c = w.reader().counters(client)?;
                c.api_hits += hits;
                w.put_counters(client, &c)?;
            }
            Ok::<_, Error>(())
        });
        self.hits.batch_done(&batch, committed.is_ok());
        committed?;
        Ok(batch.iter().map(|(_, n)| n).sum())
    }

    fn stored_hits(&self, client: &str) -> Result<u64, Error> {
        Ok(self.store.read(|r| r.counters(client))?.api_hits)
    }

    pub fn remaining(&self, client: &str) -> Result<Remaining, Error> {
        let mut c: Counters = self.store.read(|r| r.counters(client))?;
        // The book's total, not the store's: it has the unsaved hits and a running
        // flush's batch exactly once.
        let stored = c.api_hits;
        c.api_hits = self.hits.total(client, || Ok::<_, Error>(stored))?;
        let left = |limit: u64, used: u64| {
            if limit == 0 {
                UNLIMITED_REPORTED
            } else {
                limit.saturating_sub(used)
            }
        };
        Ok(Remaining {
            api_hits: left(self.quota.api_hits, c.api_hits),
            faces: left(self.quota.faces, c.faces),
            galleries: left(self.quota.galleries, c.galleries),
        })
    }

    pub(crate) fn quota(&self) -> Quota {
        self.quota
    }
}

impl Drop for Accounts {
    /// The last flush for owners that do not call `flush_hits` at their end.
    fn drop(&mut self) {
        if let Err(e) = self.flush_hits() {
            tracing::warn!(error = %e, "api hit counts not saved");
        }
    }
}

/// The token without surrounding spaces or a `Bearer ` prefix, if it can be one of ours
/// (ASCII, so slicing its id is safe).
fn normalize(token: &str) -> Option<&str> {
    let token = token.trim();
    let token = token
        .strip_prefix("Bearer ")
        .or_else(|| token.strip_prefix("bearer "))
        .unwrap_or(token)
        .trim();
    (token.len() >= TOKEN_ID_LEN + 8 && token.is_ascii()).then_some(token)
}

/// The key a (normalized, ASCII) token is stored under: its first 12 characters, or
/// for a kiosk token its prefix and the 12 after it.
fn token_key(token: &str) -> Option<&str> {
    let prefix = if token.starts_with(Scope::KIOSK_PREFIX) {
        Scope::KIOSK_PREFIX.len()
    } else {
        0
    };
    token.get(..prefix + TOKEN_ID_LEN)
}

fn check_name(name: &str) -> Result<(), Error> {
    if name.is_empty()
        || name.chars().count() > 120
        || name.len() > crate::store::MAX_ID_BYTES
        || name.chars().any(char::is_whitespace)
    {
        return Err(Error::InvalidName(format!(
            "a client name is 1-120 characters ({} bytes of UTF-8) without spaces",
            crate::store::MAX_ID_BYTES
        )));
    }
    Ok(())
}

fn put_token(
    w: &mut store::Writer<'_, '_>,
    client: &str,
    token: &str,
    origin: &str,
) -> Result<(), Error> {
    let key = token_key(token).ok_or(Error::Unauthorized)?;
    let scope = if key.starts_with(Scope::KIOSK_PREFIX) {
        Some(Scope::Kiosk.as_str().to_string())
    } else {
        None
    };
    let record = TokenRecord {
        client: client.to_string(),
        sha256: hex(&Sha256::digest(token.as_bytes())),
        created_at: store::now(),
        origin: origin.to_string(),
        scope,
    };
    w.put_token(key, &record)?;
    Ok(())
}

/// 32 random bytes, URL-safe base64 (43 characters); kiosk tokens carry their prefix.
/// A full-power token never starts with the kiosk prefix: such a draw is redrawn.
fn new_token(scope: Scope) -> String {
    loop {
        let mut bytes = [0u8; 32];
        rand::thread_rng().fill_bytes(&mut bytes);
        let random = URL_SAFE_NO_PAD.encode(bytes);
        match scope {
            Scope::Kiosk => return format!("{}{random}", Scope::KIOSK_PREFIX),
            Scope::Full if !random.starts_with(Scope::KIOSK_PREFIX) => return random,
            Scope::Full => continue,
        }
    }
}

fn hash_password(password: &str) -> String {
    let mut salt = [0u8; 16];
    rand::thread_rng().fill_bytes(&mut salt);
    let mut out = [0u8; 32];
    pbkdf2::pbkdf2_hmac::<Sha256>(&length_prefixed(password), &salt, PBKDF2_ROUNDS, &mut out);
    format!(
        "{SCHEME}${PBKDF2_ROUNDS}${}${}",
        STANDARD_NO_PAD.encode(salt),
        STANDARD_NO_PAD.encode(out)
    )
}

/// The PBKDF2 input of [`SCHEME`]: distinct passwords give distinct HMAC keys.
fn length_prefixed(password: &str) -> Vec<u8> {
    let len = u32::try_from(password.len()).unwrap_or(u32::MAX);
    let mut out = len.to_be_bytes().to_vec();
    out.extend_from_slice(password.as_bytes());
    out
}

/// A hash of a random password, checked against when a name has none, so that
/// unknown names cost the same work as known ones.
fn dummy_hash() -> &'static str {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DUMMY.get_or_init(|| hash_password(&new_token(Scope::Full)))
}

fn verify_password(password: &str, stored: &str) -> bool {
    let parts: Vec<&str> = stored.split('$').collect();
    let [scheme, rounds, salt, hash] = parts.as_slice() else {
        return false;
    };
    let (Ok(rounds), Ok(salt), Ok(hash)) = (
        rounds.parse::<u32>(),
        STANDARD_NO_PAD.decode(salt),
        STANDARD_NO_PAD.decode(hash),
    ) else {
        return false;
    };
    let input = match *scheme {
        SCHEME => length_prefixed(password),
        // The bare scheme cannot tell trailing NULs apart nor a password over 64 bytes
        // from its SHA-256 (HMAC key handling): such passwords never match it.
        SCHEME_BARE if !password.contains('\0') && password.len() <= 64 => {
            password.as_bytes().to_vec()
        }
        _ => return false,
    };
    if hash.len() != 32 {
        return false;
    }
    let mut out = [0u8; 32];
    pbkdf2::pbkdf2_hmac::<Sha256>(&input, &salt, rounds, &mut out);
    bool::from(out.ct_eq(hash.as_slice()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn hex_decode(s: &str) -> Vec<u8> {
    (0..s.len() / 2)
        .filter_map(|i| u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accounts(quota: Quota) -> (tempfile::TempDir, Accounts) {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(dir.path(), 1).unwrap());
        (dir, Accounts::new(store, quota))
    }

    /// Accounts with one client, "kiosk", allowed `api_hits` hits.
    fn kiosk_with_hit_quota(api_hits: u64) -> (tempfile::TempDir, Accounts) {
        let (dir, a) = accounts(Quota {
            api_hits,
            ..Quota::default()
        });
        a.add_client("kiosk", None).unwrap();
        (dir, a)
    }

    #[test]
    fn a_new_token_authenticates_its_client_until_rotated() {
        let (_dir, a) = accounts(Quota::default());
        let token = a.add_client("kiosk", None).unwrap();
        assert_eq!(a.authenticate(&token).unwrap(), "kiosk");
        let new = a.rotate("kiosk").unwrap();
        assert!(matches!(a.authenticate(&token), Err(Error::Unauthorized)));
        assert_eq!(a.authenticate(&new).unwrap(), "kiosk");
        assert_eq!(a.revoke_all("kiosk").unwrap(), 1);
        assert!(matches!(a.authenticate(&new), Err(Error::Unauthorized)));
    }

    #[test]
    fn a_kiosk_token_is_stored_with_its_scope_and_opens_nothing_else() {
        let (_dir, a) = accounts(Quota::default());
        let full = a.add_client("door", None).unwrap();
        let kiosk = a.add_kiosk_token("door").unwrap();
        assert!(kiosk.starts_with("kiosk_"), "{kiosk}");
        assert_eq!(
            a.authenticate_any(&kiosk).unwrap(),
            Principal {
                client: "door".into(),
                scope: Scope::Kiosk
            }
        );
        assert!(matches!(a.authenticate(&kiosk), Err(Error::OutOfScope)));
        assert_eq!(a.authenticate(&full).unwrap(), "door");
        // Durable: the record names the scope, under the prefixed key; a binary that
        // predates scopes looks the token up by its first 12 characters and finds none.
        let record = a.store.read(|r| r.token(&kiosk[..18])).unwrap().unwrap();
        assert_eq!(record.scope.as_deref(), Some("kiosk"));
        assert!(a.store.read(|r| r.token(&kiosk[..12])).unwrap().is_none());
        // The kiosk prefix on a full token's text is another token.
        assert!(matches!(
            a.authenticate_any(&format!("kiosk_{full}")),
            Err(Error::Unauthorized)
        ));
        // A new client gets only the kiosk token; revoke removes both kinds.
        let lone = a.add_kiosk_token("hall").unwrap();
        assert!(matches!(a.authenticate(&lone), Err(Error::OutOfScope)));
        assert_eq!(a.revoke_all("door").unwrap(), 2);
        assert!(matches!(
            a.authenticate_any(&kiosk),
            Err(Error::Unauthorized)
        ));
    }

    #[test]
    fn a_token_with_one_changed_character_is_refused() {
        let (_dir, a) = accounts(Quota::default());
        let token = a.add_client("kiosk", None).unwrap();
        let mut forged = token.clone().into_bytes();
        let last = forged.len() - 1;
        forged[last] = if forged[last] == b'A' { b'B' } else { b'A' };
        let forged = String::from_utf8(forged).unwrap();
        assert!(matches!(a.authenticate(&forged), Err(Error::Unauthorized)));
        assert!(matches!(a.authenticate(""), Err(Error::Unauthorized)));
    }

    #[test]
    fn passwords_issue_tokens_and_wrong_passwords_do_not() {
        let (_dir, a) = accounts(Quota::default());
        a.add_client("kiosk", Some("s3cret")).unwrap();
        let t = a.issue_token("kiosk", "s3cret").unwrap();
        assert_eq!(a.authenticate(&t).unwrap(), "kiosk");
        assert!(a.issue_token("kiosk", "wrong").is_err());
        assert!(a.revoke_token(&t, "kiosk", "wrong").is_err());
        a.revoke_token(&t, "kiosk", "s3cret").unwrap();
        assert!(a.authenticate(&t).is_err());
    }

    #[test]
    fn a_password_with_a_trailing_nul_is_another_password() {
        let (_dir, a) = accounts(Quota::default());
        a.add_client("kiosk", Some("hunter2")).unwrap();
        assert!(matches!(
            a.issue_token("kiosk", "hunter2\u{0}"),
            Err(Error::Unauthorized)
        ));
        assert!(a.issue_token("kiosk", "hunter2").is_ok());
        // A hash of the first scheme: still verified, but not with the NUL.
        let mut salt_out = [0u8; 32];
        pbkdf2::pbkdf2_hmac::<Sha256>(b"hunter2", b"0123456789abcdef", 1000, &mut salt_out);
        let bare = format!(
            "pbkdf2-sha256$1000${}${}",
            STANDARD_NO_PAD.encode(b"0123456789abcdef"),
            STANDARD_NO_PAD.encode(salt_out)
        );
        assert!(verify_password("hunter2", &bare));
        assert!(!verify_password("hunter2\u{0}", &bare));
    }

    #[test]
    fn issuing_past_the_cap_revokes_the_oldest_oauth_token_and_keeps_the_cli_one() {
        let (_dir, a) = accounts(Quota::default());
        let cli = a.add_client("kiosk", Some("pw")).unwrap();
        let first = a.issue_token("kiosk", "pw").unwrap();
        // created_at counts seconds: the first token is older than the rest only
        // once a second has passed.
        std::thread::sleep(std::time::Duration::from_millis(1100));
        let mut last = String::new();
        for _ in 0..MAX_OAUTH_TOKENS {
            last = a.issue_token("kiosk", "pw").unwrap();
        }
        assert_eq!(a.authenticate(&cli).unwrap(), "kiosk");
        assert_eq!(a.authenticate(&last).unwrap(), "kiosk");
        let live = a.store.read(|r| r.tokens_of("kiosk")).unwrap();
        assert_eq!(live.len(), MAX_OAUTH_TOKENS + 1);
        assert!(matches!(a.authenticate(&first), Err(Error::Unauthorized)));
    }

    #[test]
    fn wrong_passwords_are_refused_before_hashing_once_over_the_budget() {
        let (_dir, a) = accounts(Quota::default());
        a.add_client("kiosk", Some("pw")).unwrap();
        let mut limited = None;
        for i in 0..50 {
            if let Err(Error::TooManyAttempts { retry_after_secs }) = a.issue_token("kiosk", "no") {
                limited = Some((i, retry_after_secs));
                break;
            }
        }
        let (after, wait) = limited.expect("never limited");
        assert_eq!(after, super::super::login_throttle::NAME_BURST as usize);
        assert!(wait >= 1);
        // Even the right password waits now: the name's budget is spent.
        assert!(matches!(
            a.issue_token("kiosk", "pw"),
            Err(Error::TooManyAttempts { .. })
        ));
    }

    #[test]
    fn api_hits_stop_at_the_quota() {
        let (_dir, a) = kiosk_with_hit_quota(2);
        a.hit("kiosk").unwrap();
        assert_eq!(a.remaining("kiosk").unwrap().api_hits, 1);
        a.hit("kiosk").unwrap();
        assert!(matches!(
            a.hit("kiosk"),
            Err(Error::QuotaExhausted(QuotaKind::ApiHits))
        ));
        assert_eq!(a.remaining("kiosk").unwrap().faces, UNLIMITED_REPORTED);
    }

    #[test]
    fn hits_write_nothing_until_flushed_and_the_quota_holds_across_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let quota = Quota {
            api_hits: 5,
            ..Quota::default()
        };
        let store = Arc::new(Store::open(dir.path(), 1).unwrap());
        let a = Accounts::new(store.clone(), quota);
        a.add_client("kiosk", None).unwrap();
        for _ in 0..3 {
            a.hit("kiosk").unwrap();
        }
        let stored = |s: &Store| s.read(|r| r.counters("kiosk")).unwrap().api_hits;
        assert_eq!(stored(&store), 0, "a hit writes nothing");
        assert_eq!(a.remaining("kiosk").unwrap().api_hits, 2);
        assert_eq!(a.flush_hits().unwrap(), 3);
        assert_eq!(stored(&store), 3);
        a.hit("kiosk").unwrap();
        // A restart: the one unflushed hit is saved when the accounts are dropped.
        drop(a);
        drop(store);
        let store = Arc::new(Store::open(dir.path(), 1).unwrap());
        assert_eq!(stored(&store), 4);
        let a = Accounts::new(store, quota);
        a.hit("kiosk").unwrap();
        assert!(matches!(
            a.hit("kiosk"),
            Err(Error::QuotaExhausted(QuotaKind::ApiHits))
        ));
        assert_eq!(a.remaining("kiosk").unwrap().api_hits, 0);
    }

    #[test]
    fn the_remaining_hits_never_go_up_while_hits_are_flushed() {
        let (_dir, a) = accounts(Quota {
            api_hits: 1_000_000,
            ..Quota::default()
        });
        a.add_client("kiosk", None).unwrap();
        let done = std::sync::atomic::AtomicBool::new(false);
        std::thread::scope(|s| {
            s.spawn(|| {
                for _ in 0..5000 {
                    a.hit("kiosk").unwrap();
                    a.flush_hits().unwrap();
                }
                done.store(true, std::sync::atomic::Ordering::Relaxed);
            });
            // Hits only add up, so what remains only goes down; it went up when the
            // store was read before a flush and the memory after it.
            let mut last = u64::MAX;
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                let left = a.remaining("kiosk").unwrap().api_hits;
                assert!(left <= last, "remaining went up from {last} to {left}");
                last = left;
            }
        });
    }

    #[test]
    fn hits_and_counters_answer_while_a_flush_waits_for_the_disk() {
        use std::sync::mpsc::channel;
        use std::time::{Duration, Instant};
        let (_dir, a) = kiosk_with_hit_quota(10);
        for _ in 0..4 {
            a.hit("kiosk").unwrap();
        }
        let (writer_held, held) = channel();
        let (release, released) = channel::<()>();
        let a = &a;
        std::thread::scope(|s| {
            // Another write holds the store's writer, as a slow sync on an SD card does;
            // it lets go after 30 s at most, so that a broken build fails, not hangs.
            let writer = s.spawn(move || {
                a.writes
                    .commit(|_| {
                        writer_held.send(()).unwrap();
                        Ok::<_, Error>(released.recv_timeout(Duration::from_secs(30)).is_err())
                    })
                    .unwrap()
            });
            held.recv().unwrap();
            let flush = s.spawn(move || a.flush_hits().unwrap());
            let deadline = Instant::now() + Duration::from_secs(60);
            while a.hits.saving() == 0 {
                assert!(Instant::now() < deadline, "the flush never took its batch");
                std::thread::sleep(Duration::from_millis(5));
            }
            // The flush now waits for the writer with 4 hits in its batch. Requests go on
            // being counted and checked meanwhile (before, they waited for the flush).
            for _ in 0..6 {
                a.hit("kiosk").unwrap();
            }
            let refused = a.hit("kiosk");
            let left = a.remaining("kiosk").unwrap();
            // Fails if the writer was let go by its timeout: the hits above waited.
            let _ = release.send(());
            assert!(
                !writer.join().unwrap(),
                "hits waited for the flush's commit"
            );
            assert!(matches!(
                refused,
                Err(Error::QuotaExhausted(QuotaKind::ApiHits))
            ));
            assert_eq!(
                left.api_hits, 0,
                "4 in the running batch + 6 = the quota of 10"
            );
            assert_eq!(flush.join().unwrap(), 4);
        });
        let stored = a.store.read(|r| r.counters("kiosk")).unwrap().api_hits;
        assert_eq!(stored, 4);
        assert_eq!(a.flush_hits().unwrap(), 6);
        assert_eq!(a.store.read(|r| r.counters("kiosk")).unwrap().api_hits, 10);
        assert_eq!(a.list_clients().unwrap()[0].api_hits, 10);
    }

    #[test]
    fn concurrent_hits_never_pass_the_quota() {
        let (_dir, a) = kiosk_with_hit_quota(50);
        let a = Arc::new(a);
        let granted = std::sync::atomic::AtomicU64::new(0);
        std::thread::scope(|s| {
            for t in 0..4 {
                let (a, granted) = (&a, &granted);
                s.spawn(move || {
                    for i in 0..40 {
                        if a.hit("kiosk").is_ok() {
                            granted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        }
                        // A flush in the middle of the race moves hits to the store.
                        if t == 0 && i % 10 == 0 {
                            a.flush_hits().unwrap();
                        }
                    }
                });
            }
        });
        assert_eq!(granted.into_inner(), 50);
        assert_eq!(a.remaining("kiosk").unwrap().api_hits, 0);
    }
}
