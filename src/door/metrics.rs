//! Door counters for /metrics: every action's outcome, the webhook's attempts and its
//! pending calls.

use std::sync::atomic::{AtomicU64, Ordering};

/// Door actions.
pub const ACTIONS: [&str; 3] = ["webhook", "relay", "mqtt"];
/// What an action did for a visit.
pub const OUTCOMES: [&str; 6] = ["done", "queued", "refused", "failed", "dropped", "skipped"];

#[derive(Debug, Default)]
pub struct DoorMetrics {
    actions: [[AtomicU64; OUTCOMES.len()]; ACTIONS.len()],
    /// Visits decided: opened / refused.
    pub opened: AtomicU64,
    pub refused: AtomicU64,
    /// Webhook POSTs that got no 2xx (each retry counts).
    pub webhook_failed_attempts: AtomicU64,
    /// Pending webhook calls, as last seen by the sender.
    pub webhook_pending: AtomicU64,
}

impl DoorMetrics {
    pub fn count(&self, action: &str, outcome: &str) {
        let a = ACTIONS.iter().position(|x| *x == action);
        let o = OUTCOMES.iter().position(|x| *x == outcome);
        if let (Some(a), Some(o)) = (a, o) {
            self.actions[a][o].fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn get(&self, action: &str, outcome: &str) -> u64 {
        let a = ACTIONS.iter().position(|x| *x == action);
        let o = OUTCOMES.iter().position(|x| *x == outcome);
        match (a, o) {
            (Some(a), Some(o)) => self.actions[a][o].load(Ordering::Relaxed),
            _ => 0,
        }
    }

    /// Prometheus text (appended to /metrics).
    pub fn prometheus(&self) -> String {
        let mut t = String::new();
        t += "# HELP facegate_door_actions_total Door actions by outcome (done, queued, refused by a rule, failed, dropped).\n";
        t += "# TYPE facegate_door_actions_total counter\n";
        for action in ACTIONS {
            for outcome in OUTCOMES {
                t += &format!(
                    "facegate_door_actions_total{{action=\"{action}\",outcome=\"{outcome}\"}} {}\n",
                    self.get(action, outcome)
                );
            }
        }
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        t += "# HELP facegate_door_visits_total Visits decided by the door rules.\n";
        t += "# TYPE facegate_door_visits_total counter\n";
        t += &format!(
            "facegate_door_visits_total{{decision=\"opened\"}} {}\n",
            load(&self.opened)
        );
        t += &format!(
            "facegate_door_visits_total{{decision=\"refused\"}} {}\n",
            load(&self.refused)
        );
        t += "# HELP facegate_door_webhook_failed_attempts_total Webhook POSTs without a 2xx answer.\n";
        t += "# TYPE facegate_door_webhook_failed_attempts_total counter\n";
        t += &format!(
            "facegate_door_webhook_failed_attempts_total {}\n",
            load(&self.webhook_failed_attempts)
        );
        t += "# HELP facegate_door_webhook_pending Webhook calls waiting for a 2xx answer.\n";
        t += "# TYPE facegate_door_webhook_pending gauge\n";
        t += &format!(
            "facegate_door_webhook_pending {}\n",
            load(&self.webhook_pending)
        );
        t
    }
}
