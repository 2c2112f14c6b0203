//! Realistic synthetic events: many identities, a catalogue of typical sources, the operations and
//! outcomes ISC reports, service-desk tickets for manual sources, connector errors on failures.
//! Used by `provtrail send --synthetic`, `provtrail demo` and the benchmarks, so that all three
//! exercise the same kind of traffic. Deterministic for a given seed.

use std::borrow::Cow;

use provtrail_model::{
    AccountRequest, AttributeOperation, AttributeRequest, IdentityRef, Metadata,
    ProvisioningCompleted, ProvisioningResult, SourceRef,
};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

/// A source in the catalogue: its name, the provisioning target ISC reports, and whether it is
/// provisioned through a service desk (tickets, PENDING results).
struct Source {
    name: &'static str,
    target: &'static str,
    service_desk: bool,
    account_style: AccountStyle,
}

impl Source {
    /// How `sources` and connector errors name it: the short name of a connected source (as in
    /// ISC's example, "Corp AD"), the source's own name for one provisioned through a service
    /// desk, whose target is the service desk and is shared by several.
    fn label(&self) -> &'static str {
        if self.service_desk {
            self.name
        } else {
            self.target
        }
    }
}

#[derive(Clone, Copy)]
enum AccountStyle {
    DistinguishedName,
    Email,
    Login,
    Numeric,
}

const SOURCES: &[Source] = &[
    Source {
        name: "Corporate Active Directory",
        target: "Corp AD",
        service_desk: false,
        account_style: AccountStyle::DistinguishedName,
    },
    Source {
        name: "Corp LDAP",
        target: "Corp LDAP",
        service_desk: false,
        account_style: AccountStyle::DistinguishedName,
    },
    Source {
        name: "Workday",
        target: "Workday",
        service_desk: false,
        account_style: AccountStyle::Numeric,
    },
    Source {
        name: "Okta",
        target: "Okta",
        service_desk: false,
        account_style: AccountStyle::Email,
    },
    Source {
        name: "Corp Salesforce",
        target: "Corp Salesforce",
        service_desk: false,
        account_style: AccountStyle::Email,
    },
    Source {
        name: "Google Workspace",
        target: "Google Workspace",
        service_desk: false,
        account_style: AccountStyle::Email,
    },
    Source {
        name: "GitHub Enterprise",
        target: "GitHub Enterprise",
        service_desk: false,
        account_style: AccountStyle::Login,
    },
    Source {
        name: "AWS IAM Identity Center",
        target: "AWS IAM Identity Center",
        service_desk: false,
        account_style: AccountStyle::Email,
    },
    Source {
        name: "SAP ERP",
        target: "ServiceNow ITSM",
        service_desk: true,
        account_style: AccountStyle::Login,
    },
    Source {
        name: "Oracle E-Business Suite",
        target: "ServiceNow ITSM",
        service_desk: true,
        account_style: AccountStyle::Login,
    },
    Source {
        name: "Badge Access System",
        target: "ServiceNow ITSM",
        service_desk: true,
        account_style: AccountStyle::Numeric,
    },
    Source {
        name: "Slack",
        target: "Slack",
        service_desk: false,
        account_style: AccountStyle::Email,
    },
];

const FIRST_NAMES: &[&str] = &[
    "William", "Maria", "José", "Aiko", "Olivia", "Noah", "Fatima", "Liam", "Chen", "Amara",
    "Lucas", "Sofia", "Mateo", "Priya", "Elena", "Kwame", "Hannah", "Yusuf", "Ingrid", "Diego",
    "Mei", "Oscar", "Zoë", "Rafael", "Nadia", "Tomás", "Leila", "Henrik", "Ana", "Ravi",
];

const LAST_NAMES: &[&str] = &[
    "Wilson",
    "Garcia",
    "Silva",
    "Tanaka",
    "Smith",
    "Müller",
    "Okafor",
    "Johansson",
    "Wang",
    "Haddad",
    "Rossi",
    "Kowalski",
    "Nguyen",
    "Patel",
    "Dubois",
    "Mensah",
    "Schmidt",
    "Yilmaz",
    "Berg",
    "Fernández",
    "Kim",
    "O'Brien",
    "Novak",
    "Costa",
    "Ahmed",
    "Larsen",
    "Ivanova",
];

const DEPARTMENTS: &[&str] = &[
    "sales",
    "engineering",
    "finance",
    "it-ops",
    "hr",
    "legal",
    "marketing",
    "support",
];

const ACTIONS: &[(&str, u32)] = &[
    ("IdentityRefresh", 55),
    ("Access Request", 30),
    ("Certification", 10),
    ("LifecycleStateChange", 5),
];

const OPERATIONS: &[(&str, u32)] = &[
    ("Modify", 50),
    ("Create", 20),
    ("Enable", 8),
    ("Disable", 10),
    ("Unlock", 4),
    ("Delete", 8),
];

/// What a directory connector (Active Directory, LDAP) says when it fails.
const DIRECTORY_ERRORS: &[&str] = &[
    "connection timed out after 30000 ms",
    "LDAP: error code 50 - Insufficient Access Rights",
    "LDAP: error code 19 - 0000052D: Constraint violation (password history)",
    "LDAP: error code 68 - Entry Already Exists",
    "account is locked by the target system",
    "the group does not exist on the target",
];

/// What a connector to a web API says when it fails.
const API_ERRORS: &[&str] = &[
    "connection timed out after 30000 ms",
    "HTTP 429 Too Many Requests from target API",
    "HTTP 503 Service Unavailable from target API",
    "account is locked by the target system",
    "the group does not exist on the target",
    "duplicate account: a user with this login already exists",
];

/// Settings of a generator.
#[derive(Debug, Clone)]
pub struct SynthOptions {
    /// Seed: the same seed gives the same events.
    pub seed: u64,
    /// Share of account requests that fail (0 to 1).
    pub failure_rate: f64,
    /// How many distinct identities events are about.
    pub identities: usize,
}

impl Default for SynthOptions {
    fn default() -> Self {
        SynthOptions {
            seed: 1,
            failure_rate: 0.03,
            identities: 5_000,
        }
    }
}

struct Identity {
    id: String,
    name: String,
    login: String,
    department: &'static str,
}

/// A stream of realistic events.
pub struct Generator {
    rng: StdRng,
    failure_rate: f64,
    identities: Vec<Identity>,
    source_ids: Vec<String>,
}

impl std::fmt::Debug for Generator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Generator")
            .field("failure_rate", &self.failure_rate)
            .field("identities", &self.identities.len())
            .finish()
    }
}

fn hex_id(rng: &mut StdRng) -> String {
    format!("{:032x}", rng.random::<u128>())
}

fn uuid(rng: &mut StdRng) -> String {
    let bits: u128 = rng.random();
    // A version 4 UUID, as ISC's invocation ids are.
    let bits = (bits & !(0xf << 76) | (0x4 << 76)) & !(0x3 << 62) | (0x2 << 62);
    let hex = format!("{bits:032x}");
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

fn weighted<T: Copy>(rng: &mut StdRng, table: &[(T, u32)]) -> T {
    let total: u32 = table.iter().map(|(_, weight)| weight).sum();
    let mut pick = rng.random_range(0..total.max(1));
    for (item, weight) in table {
        if pick < *weight {
            return *item;
        }
        pick -= weight;
    }
    table[0].0
}

fn pick<'a, T>(rng: &mut StdRng, items: &'a [T]) -> &'a T {
    &items[rng.random_range(0..items.len())]
}

impl Generator {
    /// A generator with these settings.
    pub fn new(options: &SynthOptions) -> Self {
        let mut rng = StdRng::seed_from_u64(options.seed);
        let identities = (0..options.identities.max(1))
            .map(|index| {
                let first = *pick(&mut rng, FIRST_NAMES);
                let last = *pick(&mut rng, LAST_NAMES);
                Identity {
                    id: hex_id(&mut rng),
                    name: format!("{first} {last}"),
                    login: format!("{}.{}{index}", first.to_lowercase(), last.to_lowercase())
                        .replace(['\'', ' '], ""),
                    department: DEPARTMENTS[rng.random_range(0..DEPARTMENTS.len())],
                }
            })
            .collect();
        let source_ids = SOURCES.iter().map(|_| hex_id(&mut rng)).collect();
        Generator {
            rng,
            failure_rate: options.failure_rate.clamp(0.0, 1.0),
            identities,
            source_ids,
        }
    }

    /// The next event, with a fresh `_metadata.invocationId`.
    pub fn next_event(&mut self) -> ProvisioningCompleted<'static> {
        let rng = &mut self.rng;
        let recipient = &self.identities[rng.random_range(0..self.identities.len())];
        let action = weighted(rng, ACTIONS);
        let count = match rng.random_range(0..100) {
            0..=59 => 1,
            60..=84 => 2,
            85..=95 => 3,
            _ => 4,
        };
        let mut chosen: Vec<usize> = Vec::with_capacity(count);
        while chosen.len() < count {
            let source = rng.random_range(0..SOURCES.len());
            if !chosen.contains(&source) {
                chosen.push(source);
            }
        }
        let mut errors = Vec::new();
        let mut requests = Vec::with_capacity(count);
        for &index in &chosen {
            let source = &SOURCES[index];
            let failed = rng.random_bool(self.failure_rate);
            let result = if failed {
                ProvisioningResult::Failed
            } else if source.service_desk && rng.random_bool(0.4) {
                ProvisioningResult::Pending
            } else {
                ProvisioningResult::Success
            };
            if failed {
                errors.push(format!(
                    "Connector {} failed: {}",
                    source.label(),
                    pick(
                        rng,
                        match source.account_style {
                            AccountStyle::DistinguishedName => DIRECTORY_ERRORS,
                            _ => API_ERRORS,
                        }
                    )
                ));
            }
            let account_id = match source.account_style {
                AccountStyle::DistinguishedName => format!(
                    "CN={},ou={},ou=people,dc=helpco,dc=com",
                    recipient.name, recipient.department
                ),
                AccountStyle::Email => format!("{}@helpco.com", recipient.login),
                AccountStyle::Login => recipient.login.clone(),
                AccountStyle::Numeric => format!("{}", rng.random_range(100_000..999_999)),
            };
            let mut request = AccountRequest::new(
                SourceRef::new(self.source_ids[index].clone(), source.name),
                weighted(rng, OPERATIONS),
                result,
                source.target,
            )
            .with_account_id(account_id);
            if source.service_desk {
                request =
                    request.with_ticket_id(format!("RITM{:07}", rng.random_range(0..10_000_000)));
            }
            let attributes = (0..rng.random_range(1..=3))
                .map(|n| {
                    let (name, value) = match n {
                        0 => (
                            "memberOf",
                            format!(
                                "CN={}-{},OU=Groups,DC=helpco,DC=com",
                                recipient.department,
                                pick(rng, &["all", "admins", "readers", "vpn", "oncall"])
                            ),
                        ),
                        1 => ("department", recipient.department.to_owned()),
                        _ => (
                            "title",
                            pick(rng, &["Engineer", "Analyst", "Manager", "Director"]).to_string(),
                        ),
                    };
                    let operation = if n == 0 {
                        AttributeOperation::Add
                    } else {
                        AttributeOperation::Set
                    };
                    AttributeRequest::new(name, operation).with_value(value)
                })
                .collect();
            requests.push(request.with_attribute_requests(attributes));
        }
        let sources: Vec<&str> = chosen.iter().map(|&index| SOURCES[index].label()).collect();
        let requester = if action == "Access Request" {
            let requester = &self.identities[rng.random_range(0..self.identities.len())];
            IdentityRef::new(requester.id.clone(), requester.name.clone())
        } else {
            IdentityRef::new(recipient.id.clone(), recipient.name.clone())
        };
        let mut event = ProvisioningCompleted::new(
            hex_id(rng),
            sources.join(", "),
            IdentityRef::new(recipient.id.clone(), recipient.name.clone()),
            requests,
        )
        .with_action(action)
        .with_requester(requester)
        .with_metadata(Metadata::provisioning_completed(uuid(rng)));
        if !errors.is_empty() {
            event = event.with_errors(errors.into_iter().map(Cow::Owned));
        }
        if rng.random_bool(0.05) {
            event = event.with_warnings(["Notification Skipped due to invalid email"]);
        }
        event
    }

    /// The next event as compact JSON.
    pub fn next_json(&mut self) -> Vec<u8> {
        self.next_event().to_json().into_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn synthetic_events_are_valid_in_strict_mode_and_about_one_kilobyte() {
        let mut generator = Generator::new(&SynthOptions::default());
        let mut total = 0;
        for _ in 0..200 {
            let json = generator.next_json();
            total += json.len();
            let report =
                provtrail_model::validate_slice(&json, &provtrail_model::Options::strict())
                    .unwrap();
            assert!(report.is_valid(), "{:?}", report.errors);
        }
        let average = total / 200;
        assert!((500..2500).contains(&average), "average size {average}");
    }

    #[test]
    fn the_same_seed_gives_the_same_events_and_failures_follow_the_rate() {
        let options = SynthOptions {
            failure_rate: 0.5,
            ..SynthOptions::default()
        };
        let mut a = Generator::new(&options);
        let mut b = Generator::new(&options);
        assert_eq!(a.next_json(), b.next_json());
        let failed = (0..400)
            .filter(|_| a.next_event().counts().failed > 0)
            .count();
        assert!(
            failed > 100,
            "{failed} of 400 events had a failure at rate 0.5"
        );
        let mut none = Generator::new(&SynthOptions {
            failure_rate: 0.0,
            ..SynthOptions::default()
        });
        assert!((0..200).all(|_| none.next_event().counts().failed == 0));
    }

    #[test]
    fn sources_and_errors_name_each_source_once_and_as_its_requests_do() {
        let mut generator = Generator::new(&SynthOptions {
            failure_rate: 0.5,
            ..SynthOptions::default()
        });
        for _ in 0..300 {
            let event = generator.next_event();
            let listed: Vec<&str> = event.sources.split(", ").collect();
            let mut unique = listed.clone();
            unique.sort_unstable();
            unique.dedup();
            assert_eq!(unique.len(), listed.len(), "{}", event.sources);
            for request in &event.account_requests {
                let source = SOURCES
                    .iter()
                    .find(|source| source.name == request.source.name)
                    .unwrap();
                assert!(listed.contains(&source.label()), "{}", event.sources);
                if request.provisioning_result == ProvisioningResult::Failed {
                    let prefix = format!("Connector {} failed", source.label());
                    assert!(
                        event
                            .errors
                            .as_option()
                            .into_iter()
                            .flatten()
                            .any(|error| error.starts_with(&prefix)),
                        "{prefix}"
                    );
                }
            }
        }
    }
}
