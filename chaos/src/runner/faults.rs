//! Faults on the timeline: crashes, pauses, partitions (bans through the admin API), proxy
//! link faults and netns rules, each recorded as a window for the checks.

use super::*;

pub(super) async fn faults(run: Arc<Run>) {
    let mut schedule: Vec<(f64, crate::scenario::Fault)> = Vec::new();
    for f in &run.scenario.faults {
        for r in 0..f.repeat {
            schedule.push(((f.at_secs + u64::from(r) * f.every_secs) as f64, f.clone()));
        }
    }
    schedule.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut pending = Vec::new();
    for (at, f) in schedule {
        sleep_until_secs(&run, at).await;
        let run2 = run.clone();
        pending.push(tokio::spawn(async move { apply_fault(run2, at, f).await }));
    }
    for p in pending {
        let _ = p.await;
    }
}

pub(super) async fn apply_fault(run: Arc<Run>, at: f64, f: crate::scenario::Fault) {
    let dur = f.duration_secs as f64;
    match f.action {
        FaultAction::Crash => {
            for i in run.pick(&f.node) {
                if !lock(&run.cluster).nodes[i].is_running() {
                    continue;
                }
                let acked_here: Vec<RecordId> =
                    lock(&run.acks).iter().filter(|a| a.node == i).map(|a| a.id).collect();
                info!(node = i, at, "fault: SIGKILL");
                let _ = lock(&run.cluster).crash(i);
                lock(&run.windows).push(Window {
                    label: format!("crash {i}"),
                    start_secs: at,
                    end_secs: at + dur,
                    fault: true,
                });
                sleep_until_secs(&run, at + dur).await;
                info!(node = i, "fault: restart");
                let _ = lock(&run.cluster).start(i);
                // Durability: right after restart, before sync could refill it, the node must
                // hold every record it acknowledged before the kill.
                let healthy = run.wait_healthy(i, Duration::from_secs(60)).await;
                let mut lost = Vec::new();
                let mut unread = None;
                if healthy {
                    // What the node acknowledged is its own feed: read that (a few pages), not
                    // every record it holds (over 100,000 under a Sybil flood, which times out
                    // on a loaded machine; a failed read once counted as losing everything).
                    match own_feed_ids(&run, i).await {
                        Ok(have) => {
                            lost = acked_here.iter().filter(|id| !have.contains(id)).copied().collect()
                        }
                        Err(e) => unread = Some(e),
                    }
                    lift_pending_unbans(&run, Some(i)).await;
                }
                lock(&run.durability).push((i, lost, healthy, unread));
            }
        }
        FaultAction::Pause => {
            for i in run.pick(&f.node) {
                info!(node = i, at, "fault: SIGSTOP");
                let _ = lock(&run.cluster).pause(i);
                lock(&run.windows).push(Window {
                    label: format!("pause {i}"),
                    start_secs: at,
                    end_secs: at + dur,
                    fault: true,
                });
                sleep_until_secs(&run, at + dur).await;
                let _ = lock(&run.cluster).resume(i);
                // A heal sent while the node was stopped timed out: lift its bans now.
                lift_pending_unbans(&run, Some(i)).await;
            }
        }
        FaultAction::Stall | FaultAction::Reset | FaultAction::Degrade => {
            let chosen: Vec<usize> = match f.link {
                Some(l) => vec![l],
                None => (0..run.links.len()).collect(),
            };
            let label = format!("{:?} link {chosen:?}", f.action).to_lowercase();
            info!(at, %label, "fault");
            let before: Vec<crate::proxy::LinkState> = chosen.iter().map(|l| run.links[*l].get()).collect();
            for (l, old) in chosen.iter().zip(&before) {
                let link = &run.links[*l];
                match f.action {
                    FaultAction::Stall => link.set(crate::proxy::LinkState { stalled: true, ..*old }),
                    FaultAction::Reset => link.reset(),
                    _ => link.set(crate::proxy::LinkState {
                        latency_ms: f.latency_ms,
                        jitter_ms: f.jitter_ms,
                        bytes_per_sec: f.bytes_per_sec,
                        ..*old
                    }),
                }
            }
            if f.action == FaultAction::Reset {
                lock(&run.windows).push(Window { label, start_secs: at, end_secs: at + 0.5, fault: true });
                return;
            }
            lock(&run.windows).push(Window { label, start_secs: at, end_secs: at + dur, fault: true });
            sleep_until_secs(&run, at + dur).await;
            for (l, old) in chosen.iter().zip(before) {
                run.links[*l].set(old);
            }
        }
        FaultAction::Loss | FaultAction::OneWay | FaultAction::Bandwidth => {
            let ips: Vec<std::net::Ipv4Addr> = lock(&run.cluster).nodes.iter().map(|n| n.ip).collect();
            let rule = match f.action {
                FaultAction::Loss => run
                    .pick(&f.node)
                    .into_iter()
                    .map(|i| crate::netns::Rule::Loss { node: i, percent: f.loss_percent })
                    .collect(),
                FaultAction::OneWay => match (f.from, f.to) {
                    (Some(a), Some(b)) => vec![crate::netns::Rule::Drop { node: b, from: ips[a] }],
                    _ => Vec::new(),
                },
                _ => run
                    .pick(&f.node)
                    .into_iter()
                    .map(|i| crate::netns::Rule::Rate { node: i, bytes_per_sec: f.bytes_per_sec })
                    .collect::<Vec<_>>(),
            };
            info!(at, ?rule, "fault: netns rule");
            lock(&run.windows).push(Window {
                label: format!("{:?}", f.action).to_lowercase(),
                start_secs: at,
                end_secs: at + dur,
                fault: true,
            });
            for r in &rule {
                if let Err(e) = crate::netns::apply(r, true) {
                    warn!(error = %e, "netns fault failed");
                }
            }
            sleep_until_secs(&run, at + dur).await;
            for r in &rule {
                if let Err(e) = crate::netns::apply(r, false) {
                    warn!(error = %e, "undoing a netns fault failed");
                }
            }
        }
        FaultAction::RestoreBackup => {
            for i in run.pick(&f.node) {
                super::backup::restore_backup(&run, i, at, dur).await;
            }
        }
        FaultAction::DiskFull => {
            for i in run.pick(&f.node) {
                let dir = lock(&run.cluster).nodes[i].data_dir.clone();
                let ballast = dir.join("chaos-ballast");
                info!(node = i, at, free_mib = f.free_mib, "fault: disk full");
                if let Err(e) = fill_disk(&ballast, f.free_mib * 1024 * 1024) {
                    warn!(node = i, error = %e, "disk_full fault failed");
                    continue;
                }
                lock(&run.windows).push(Window {
                    label: format!("disk full {i}"),
                    start_secs: at,
                    end_secs: at + dur,
                    fault: true,
                });
                sleep_until_secs(&run, at + dur).await;
                info!(node = i, "fault: disk freed");
                if let Err(e) = std::fs::remove_file(&ballast) {
                    warn!(node = i, error = %e, "removing the disk ballast failed");
                }
            }
        }
        FaultAction::Partition => {
            let groups = partition_groups(&run, f.split.as_ref());
            info!(?groups, at, "fault: partition");
            lock(&run.windows).push(Window {
                label: "partition".into(),
                start_secs: at,
                end_secs: at + dur,
                fault: true,
            });
            set_partition(&run, &groups, true).await;
            sleep_until_secs(&run, at + dur).await;
            info!("fault: heal");
            set_partition(&run, &groups, false).await;
        }
    }
}

pub(super) fn partition_groups(run: &Run, split: Option<&Split>) -> Vec<Vec<usize>> {
    let n = run.scenario.nodes;
    let mut rng = lock(&run.rng);
    match split {
        Some(Split::Groups(g)) => g.clone(),
        Some(Split::Named(s)) if s == "isolate" => {
            let i = rng.gen_range(0..n);
            vec![vec![i], (0..n).filter(|j| *j != i).collect()]
        }
        Some(Split::Named(_)) | None => {
            // Majority/minority: a random minority of floor((n-1)/2) nodes (at least one);
            // halves: a random half.
            let halves = matches!(split, Some(Split::Named(name)) if name == "halves");
            let mut all: Vec<usize> = (0..n).collect();
            for k in (1..all.len()).rev() {
                let j = rng.gen_range(0..=k);
                all.swap(k, j);
            }
            let minority = if halves { n / 2 } else { (n - 1) / 2 }.max(1);
            let (a, b) = all.split_at(minority);
            vec![a.to_vec(), b.to_vec()]
        }
    }
}

/// Retries the heal requests that `node` (every node with `None`) missed while it was down.
/// A request that fails again stays pending.
/// The ids in node `i`'s own feed, read up to three times (the node is busy catching up).
async fn own_feed_ids(run: &Run, i: usize) -> Result<HashSet<RecordId>, String> {
    let author = lock(&run.cluster).nodes[i].author.clone();
    let author: palisade_types::AuthorKey = author.parse().map_err(|e| format!("{e}"))?;
    let mut last = String::new();
    for _ in 0..3 {
        match run.apis[i].feed_ids(&author).await {
            Ok(ids) => return Ok(ids),
            Err(e) => last = format!("{e:#}"),
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    Err(last)
}

pub(super) async fn lift_pending_unbans(run: &Run, node: Option<usize>) {
    let due: Vec<(usize, String)> = {
        let mut pending = lock(&run.pending_unbans);
        let (due, keep) = pending.drain(..).partition(|(a, _)| node.is_none_or(|n| n == *a));
        *pending = keep;
        due
    };
    let addrs: HashMap<String, String> =
        lock(&run.cluster).nodes.iter().map(|n| (n.peer_id.clone(), n.multiaddr())).collect();
    for (a, peer) in due {
        match run.apis[a].unban_peer(&peer).await {
            Ok(()) => {
                info!(node = a, %peer, "late heal: lifted a partition ban the node missed");
                // The heal's own dials found this side banned or stopped: dial again.
                if let Some(addr) = addrs.get(&peer) {
                    let _ = run.apis[a].dial(addr).await;
                }
            }
            Err(e) => {
                warn!(node = a, error = %e, "late heal failed; retrying later");
                lock(&run.pending_unbans).push((a, peer));
            }
        }
    }
}

/// Cuts (or restores) every link between nodes of different groups.
pub(super) async fn set_partition(run: &Run, groups: &[Vec<usize>], cut: bool) {
    let group_of = |i: usize| groups.iter().position(|g| g.contains(&i));
    let pairs: Vec<(usize, usize)> = (0..run.scenario.nodes)
        .flat_map(|a| (0..run.scenario.nodes).map(move |b| (a, b)))
        .filter(|(a, b)| a != b && group_of(*a) != group_of(*b))
        .collect();
    match run.scenario.network {
        NetworkMode::Netns => {
            if let Err(e) = crate::netns::set_partition(groups, cut) {
                warn!(error = %e, "netns partition failed");
            }
        }
        NetworkMode::Loopback => {
            let peers: Vec<(String, String)> =
                lock(&run.cluster).nodes.iter().map(|n| (n.peer_id.clone(), n.multiaddr())).collect();
            for (a, b) in &pairs {
                let result = if cut {
                    run.apis[*a].ban_peer(&peers[*b].0, 3600, "chaos partition").await
                } else {
                    run.apis[*a].unban_peer(&peers[*b].0).await
                };
                if let Err(e) = result {
                    warn!(node = a, error = %e, "partition/heal request failed (node down?)");
                    if !cut {
                        lock(&run.pending_unbans).push((*a, peers[*b].0.clone()));
                    }
                }
            }
        }
    }
    if !cut {
        // Reconnect across the healed cut, through the proxy where a link joins the pair.
        let nodes: Vec<(String, String)> =
            lock(&run.cluster).nodes.iter().map(|n| (n.multiaddr(), n.peer_id.clone())).collect();
        for (a, b) in pairs {
            if run.link_addrs.iter().any(|(from, to, _)| *from == b && *to == a) {
                continue; // b dials a through the proxy.
            }
            let addr = match run.link_addrs.iter().find(|(from, to, _)| *from == a && *to == b) {
                Some((_, _, p)) => format!("/ip4/{}/tcp/{}/p2p/{}", p.ip(), p.port(), nodes[b].1),
                None => nodes[b].0.clone(),
            };
            let _ = run.apis[a].dial(&addr).await;
        }
    }
}

/// Takes the free space of `ballast`'s filesystem down to `leave_free` bytes with a real
/// allocation (fallocate(1); a written file where the filesystem cannot preallocate).
fn fill_disk(ballast: &std::path::Path, leave_free: u64) -> anyhow::Result<()> {
    let dir = ballast.parent().context("ballast path has no directory")?;
    let free = palisade_store::free_bytes(dir).context("reading the free space")?;
    let size = free.saturating_sub(leave_free);
    if size == 0 {
        return Ok(());
    }
    let allocated = std::process::Command::new("fallocate")
        .args(["-l", &size.to_string()])
        .arg(ballast)
        .status()
        .is_ok_and(|s| s.success());
    if !allocated {
        use std::io::Write;
        let chunk = vec![0xA5u8; 1024 * 1024];
        let mut f = std::fs::File::create(ballast)?;
        let mut left = size;
        while left > 0 {
            let n = left.min(chunk.len() as u64) as usize;
            f.write_all(&chunk[..n])?;
            left -= n as u64;
        }
        f.sync_all()?;
    }
    Ok(())
}
