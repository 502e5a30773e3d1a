//! The one definition of the bus topology: exchanges, consumer queues, their bindings, retry
//! tiers and dead-letter queues. Every service declares all of it at start (idempotently), so
//! nothing is dropped because a consumer started late.

use std::time::Duration;

/// Exchange the ingress publishes Feishu events and callbacks to; key `<app_id>.<event_type>`.
pub const FEISHU_EVENTS: &str = "feishu.events";
/// Exchange directory-sync publishes org changes to;
/// key `<app_id>.<user|department|membership>.<created|updated|deleted>`.
pub const ORG_CHANGES: &str = "org.changes";
/// Exchange other services publish notification requests to.
pub const NOTIFY_REQUESTS: &str = "notify.requests";
/// Exchange the notifier publishes delivery reports to.
pub const NOTIFY_RESULTS: &str = "notify.results";
/// Exchange the console publishes directory commands (full sync) to.
pub const DIRECTORY_COMMANDS: &str = "directory.commands";

/// Exchange auth publishes login and logout records to; key `<app_id>.auth.<login|logout>`.
pub const AUTH_EVENTS: &str = "auth.events";

/// Queue directory-sync consumes contact events from.
pub const Q_DIRECTORY_CONTACT_EVENTS: &str = "directory-sync.contact-events";
/// Queue directory-sync consumes its commands from.
pub const Q_DIRECTORY_COMMANDS: &str = "directory-sync.commands";
/// Queue the notifier consumes notification requests from.
pub const Q_NOTIFIER_REQUESTS: &str = "notifier.requests";
/// Queue the notifier consumes bot events (messages to the bot, card clicks) from.
pub const Q_NOTIFIER_BOT_EVENTS: &str = "notifier.bot-events";

/// A topic exchange, durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exchange {
    pub name: &'static str,
}

/// A binding of a queue to an exchange with a topic pattern (`*` one word, `#` zero or more).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Binding {
    pub exchange: &'static str,
    pub pattern: &'static str,
}

/// A consumer queue (a quorum queue on RabbitMQ) with its retry tiers and dead-letter queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Queue {
    pub name: &'static str,
    pub bindings: &'static [Binding],
    /// Delay before the n-th retry; a message that failed after the last tier goes to the
    /// dead-letter queue.
    pub retry_delays: &'static [Duration],
}

impl Queue {
    /// Name of the retry queue for tier `tier` (0-based).
    pub fn retry_queue(&self, tier: usize) -> String {
        format!("{}.retry.{}", self.name, tier + 1)
    }

    /// Name of the dead-letter queue.
    pub fn dead_letter_queue(&self) -> String {
        format!("{}.dead", self.name)
    }
}

/// The whole topology.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topology {
    pub exchanges: &'static [Exchange],
    pub queues: &'static [Queue],
}

const STANDARD_RETRIES: &[Duration] = &[
    Duration::from_secs(5),
    Duration::from_secs(30),
    Duration::from_secs(300),
    Duration::from_secs(1800),
];

static EXCHANGES: &[Exchange] = &[
    Exchange {
        name: FEISHU_EVENTS,
    },
    Exchange { name: ORG_CHANGES },
    Exchange {
        name: NOTIFY_REQUESTS,
    },
    Exchange {
        name: NOTIFY_RESULTS,
    },
    Exchange {
        name: DIRECTORY_COMMANDS,
    },
    Exchange { name: AUTH_EVENTS },
];

static QUEUES: &[Queue] = &[
    Queue {
        name: Q_DIRECTORY_CONTACT_EVENTS,
        bindings: &[Binding {
            exchange: FEISHU_EVENTS,
            pattern: "*.contact.#",
        }],
        retry_delays: STANDARD_RETRIES,
    },
    Queue {
        name: Q_DIRECTORY_COMMANDS,
        bindings: &[Binding {
            exchange: DIRECTORY_COMMANDS,
            pattern: "#",
        }],
        retry_delays: STANDARD_RETRIES,
    },
    Queue {
        name: Q_NOTIFIER_REQUESTS,
        bindings: &[Binding {
            exchange: NOTIFY_REQUESTS,
            pattern: "#",
        }],
        retry_delays: STANDARD_RETRIES,
    },
    Queue {
        name: Q_NOTIFIER_BOT_EVENTS,
        bindings: &[
            Binding {
                exchange: FEISHU_EVENTS,
                pattern: "*.im.#",
            },
            Binding {
                exchange: FEISHU_EVENTS,
                pattern: "*.card.#",
            },
        ],
        retry_delays: STANDARD_RETRIES,
    },
];

/// The topology of DESIGN.md, declared by every service at start.
pub fn topology() -> Topology {
    Topology {
        exchanges: EXCHANGES,
        queues: QUEUES,
    }
}

/// Routing key for a Feishu event: `<app_id>.<event_type>`.
pub fn feishu_event_key(app_id: &str, event_type: &str) -> String {
    let mut key = String::with_capacity(app_id.len() + 1 + event_type.len());
    key.push_str(app_id);
    key.push('.');
    key.push_str(event_type);
    key
}

/// Whether an AMQP topic `pattern` matches routing `key` (`*` = exactly one word, `#` = zero
/// or more words), as RabbitMQ's topic exchange decides it.
pub fn topic_matches(pattern: &str, key: &str) -> bool {
    let p: Vec<&str> = pattern.split('.').collect();
    let k: Vec<&str> = key.split('.').collect();
    matches_words(&p, &k)
}

fn matches_words(p: &[&str], k: &[&str]) -> bool {
    match p.split_first() {
        None => k.is_empty(),
        Some((&"#", rest)) => (0..=k.len()).any(|skip| matches_words(rest, &k[skip..])),
        Some((&"*", rest)) => !k.is_empty() && matches_words(rest, &k[1..]),
        Some((word, rest)) => k.first() == Some(word) && matches_words(rest, &k[1..]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_wildcards() {
        assert!(topic_matches(
            "*.contact.#",
            "cli_a.contact.user.created_v3"
        ));
        assert!(!topic_matches("*.contact.#", "cli_a.im.message.receive_v1"));
        assert!(topic_matches("#", "a.b.c"));
        assert!(topic_matches("#", ""));
        assert!(topic_matches("a.#", "a"));
        assert!(topic_matches("a.*", "a.b"));
        assert!(!topic_matches("a.*", "a"));
        assert!(!topic_matches("a.*", "a.b.c"));
        assert!(topic_matches("#.c", "a.b.c"));
        assert!(topic_matches("a.#.c", "a.c"));
        assert!(!topic_matches("a.#.c", "a.b"));
    }

    #[test]
    fn every_binding_names_a_declared_exchange() {
        let t = topology();
        for q in t.queues {
            for b in q.bindings {
                assert!(
                    t.exchanges.iter().any(|e| e.name == b.exchange),
                    "{}",
                    b.exchange
                );
            }
            assert!(!q.retry_delays.is_empty());
        }
    }
}
