//! Helpers shared by the targets: fake peers, a pool of validly signed records, temporary
//! stores and guards. Everything here is deterministic, so a crash input replays exactly.

use std::path::Path;
use std::sync::OnceLock;

use libp2p::identity::Keypair;
use libp2p::PeerId;
use palisade_guard::{Guard, GuardConfig};
use palisade_store::{Store, StoreConfig};
use palisade_types::{fixtures, AnomalyState, RecordId, Statement, VerifiedRecord};

/// The fuzzers' clock: the fixtures' fixed "now".
pub const NOW_MS: u64 = fixtures::FIXED_NOW_MS;

/// Number of distinct fake peers. More than [`small_guard_config`]'s `max_tracked_peers`, so
/// the limiter maps fill up and their bounds are exercised.
pub const PEERS: usize = 40;

/// Authors of the pre-signed pool (fixture key seeds 1..=4); fresh records may also use
/// seeds 5 and 6, which have no pool records.
pub const POOL_AUTHORS: usize = 4;
/// Records per pool author: seq 1..=4, one of each kind.
pub const CHAIN_LEN: usize = 4;
/// Author seeds fresh records can be signed with.
pub const FRESH_AUTHORS: usize = 6;

/// Deterministic fake peer ids.
pub fn peers() -> &'static [PeerId] {
    static PEER_IDS: OnceLock<Vec<PeerId>> = OnceLock::new();
    PEER_IDS.get_or_init(|| {
        (0..PEERS)
            .map(|i| {
                let mut seed = [0u8; 32];
                seed[0] = 0xf0;
                seed[1] = i as u8;
                match Keypair::ed25519_from_bytes(seed) {
                    Ok(k) => k.public().to_peer_id(),
                    Err(e) => panic!("fixed ed25519 seed rejected: {e}"),
                }
            })
            .collect()
    })
}

/// Peer number `i` (wrapping).
pub fn peer(i: u8) -> PeerId {
    let p = peers();
    p[usize::from(i) % p.len()]
}

/// A validly signed chain per pool author: `pool()[a][s]` is author `a`'s record at seq
/// `s + 1` (attestation, anomaly, anomaly update, revocation of seq 1), each naming the
/// previous one as `prev`.
pub fn pool() -> &'static [Vec<VerifiedRecord>] {
    static POOL: OnceLock<Vec<Vec<VerifiedRecord>>> = OnceLock::new();
    POOL.get_or_init(|| {
        (0..POOL_AUTHORS)
            .map(|a| {
                let mut chain: Vec<VerifiedRecord> = Vec::with_capacity(CHAIN_LEN);
                for s in 0..CHAIN_LEN {
                    let prev = chain.last().map(|r| r.id());
                    let first = chain.first().map(|r| r.id());
                    let n = (a * 10 + s) as u8;
                    let statement = match s {
                        0 => fixtures::attestation(u64::from(n)),
                        1 => fixtures::anomaly(u64::from(n)),
                        2 => fixtures::anomaly_update(anomaly_fingerprint(n - 1), AnomalyState::Acknowledged),
                        _ => fixtures::revocation(first.unwrap_or(RecordId([0; 32]))),
                    };
                    let issued = NOW_MS - 60_000 + (s as u64) * 1000;
                    chain.push(sign(a as u8, (s + 1) as u64, prev, statement, issued));
                }
                chain
            })
            .collect()
    })
}

/// Every pool record, flattened.
pub fn pool_flat() -> Vec<&'static VerifiedRecord> {
    pool().iter().flatten().collect()
}

/// Pool record number `i` (wrapping).
pub fn pool_record(i: u8) -> &'static VerifiedRecord {
    let flat = pool_flat();
    flat[usize::from(i) % flat.len()]
}

/// The fingerprint of `fixtures::anomaly(n)`.
pub fn anomaly_fingerprint(n: u8) -> palisade_types::Fingerprint {
    match fixtures::anomaly(u64::from(n)) {
        Statement::Anomaly(a) => a.fingerprint(),
        _ => palisade_types::Fingerprint([0; 32]),
    }
}

/// A fixture statement: `kind % 4` picks attestation, anomaly, anomaly update or revocation;
/// `n` varies its contents.
pub fn statement(kind: u8, n: u8) -> Statement {
    match kind % 4 {
        0 => fixtures::attestation(u64::from(n)),
        1 => fixtures::anomaly(u64::from(n)),
        2 => {
            let state = match n % 4 {
                0 => AnomalyState::Open,
                1 => AnomalyState::Acknowledged,
                2 => AnomalyState::Resolved,
                _ => AnomalyState::Suppressed,
            };
            fixtures::anomaly_update(anomaly_fingerprint(n / 4), state)
        }
        _ => fixtures::revocation(pool_record(n).id()),
    }
}

/// The fixture signing keys of the fresh authors (seeds 1..=FRESH_AUTHORS), derived once.
fn author_keys() -> &'static [palisade_types::ed25519_dalek::SigningKey] {
    static KEYS: OnceLock<Vec<palisade_types::ed25519_dalek::SigningKey>> = OnceLock::new();
    KEYS.get_or_init(|| (1..=FRESH_AUTHORS as u8).map(fixtures::key).collect())
}

/// The record author `author % FRESH_AUTHORS` (fixture key seed `1 + that`) would sign.
fn record_of(
    author: u8,
    seq: u64,
    prev: Option<RecordId>,
    statement: Statement,
    issued_at_ms: u64,
) -> (&'static palisade_types::ed25519_dalek::SigningKey, palisade_types::Record) {
    let keys = author_keys();
    let key = &keys[usize::from(author) % keys.len()];
    let author = palisade_types::AuthorKey(key.verifying_key().to_bytes());
    let position = palisade_types::FeedPosition { author, seq, prev, issued_at_ms };
    (key, palisade_types::Record { position, statement })
}

/// Signs a valid `statement` as author `author % FRESH_AUTHORS` (panics on an invalid one:
/// the signer holds records to the static rules).
pub fn sign(
    author: u8,
    seq: u64,
    prev: Option<RecordId>,
    statement: Statement,
    issued_at_ms: u64,
) -> VerifiedRecord {
    let (key, record) = record_of(author, seq, prev, statement, issued_at_ms);
    match VerifiedRecord::sign(record, key) {
        Ok(r) => r,
        Err(e) => panic!("fixture record does not sign: {e}"),
    }
}

/// Signs `statement` without the static rules and returns the envelope bytes: valid or not,
/// what a peer can send.
pub fn sign_wire(
    author: u8,
    seq: u64,
    prev: Option<RecordId>,
    statement: Statement,
    issued_at_ms: u64,
) -> Vec<u8> {
    let (key, record) = record_of(author, seq, prev, statement, issued_at_ms);
    match palisade_types::sign_envelope(&record, key) {
        Ok((_, wire)) => wire,
        Err(e) => panic!("record does not fit an envelope: {e}"),
    }
}

/// A fresh temporary directory, on tmpfs when there is one (sled fsyncs on every flush).
pub fn temp_dir() -> tempfile::TempDir {
    let shm = Path::new("/dev/shm");
    let dir = if shm.is_dir() { tempfile::tempdir_in(shm) } else { tempfile::tempdir() };
    match dir {
        Ok(d) => d,
        Err(e) => panic!("cannot create a temporary directory: {e}"),
    }
}

/// Opens a store with a small page cache.
pub fn open_store(path: &Path) -> Result<Store, palisade_store::StoreError> {
    Store::open(&StoreConfig { cache_capacity_bytes: 4 * 1024 * 1024, ..StoreConfig::new(path) })
}

/// Opens a store that this process just closed. sled releases its file lock only when its
/// background threads let go of the database, a moment after the last handle is dropped, and
/// has no event for it: retry a `Locked` error for a bounded time (as palisade-guard's tests do).
pub fn reopen_store(path: &Path) -> Result<Store, palisade_store::StoreError> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        match open_store(path) {
            Err(palisade_store::StoreError::Locked { .. }) if std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
            other => return other,
        }
    }
}

/// A valid guard config with every bounded map at its minimum size, so the fuzzers reach
/// the bounds quickly.
pub fn small_guard_config() -> GuardConfig {
    GuardConfig {
        max_established_total: 16,
        max_established_incoming: 16,
        max_established_outgoing: 16,
        max_tracked_peers: 16,
        max_tracked_authors: 16,
        max_tracked_ips: 16,
        max_bans: 16,
        ledger_capacity_entries: 16,
        max_connections_per_ip: 2,
        max_connections_per_subnet: 4,
        ip_new_connections_per_sec: 1,
        ip_new_connections_burst: 3,
        subnet_new_connections_per_sec: 1,
        subnet_new_connections_burst: 6,
        ..GuardConfig::default()
    }
}

/// A guard over `store` with a fresh metrics registry.
pub fn new_guard(cfg: GuardConfig, store: Store) -> Result<Guard, palisade_guard::GuardError> {
    Guard::new(cfg, store, &mut prometheus_client::registry::Registry::default())
}

/// The sums of the guard's `dropped.*` and `penalized.*` counters.
pub fn drop_and_penalty_counts(guard: &Guard) -> (u64, u64) {
    let counters = guard.counters();
    let sum = |prefix: &str| counters.iter().filter(|(k, _)| k.starts_with(prefix)).map(|(_, v)| *v).sum();
    (sum("dropped."), sum("penalized."))
}

/// Asserts that every bounded map of the guard is within `cap_max` (the largest cap
/// configured since the guard started; lowering a cap at run time does not evict), and the
/// ledger within its capacity.
pub fn assert_guard_bounded(guard: &Guard, cap_max: usize, ledger_max: usize) {
    for t in guard.tracker_stats() {
        assert!(t.keys <= t.cap.max(cap_max), "guard map {} holds {} keys, cap {}", t.map, t.keys, t.cap);
    }
    let ledger = guard.ledger(None, palisade_guard::MAX_LEDGER_PAGE);
    assert!(ledger.len() <= ledger_max, "ledger holds {} entries, capacity {ledger_max}", ledger.len());
}
