//! nagare's connector plugins.
//!
//! Each module implements [`nagare_engine::Connector`] for one service. A connector
//! *instance* is a named section of the config file ([`config`]); its operations are
//! registered as `<instance>.<operation>` (`kintone.get`, `crm.request`).
//! [`builtin`] gives the registry of a binary without a config file: `echo`,
//! `http.request` (absolute URLs), `users.lookup` (addresses from the users file), and the `kintone.*`, `cloudsign.*`, `rakuraku.import`
//! and `mail.send` operations, which say how to configure them when called. [`Connectors`] builds the registry from a config and
//! can replace the settings while the engine runs ([`Connectors::reload`]).
//! Embedding apps start from either and add their own connectors.

pub mod cloudsign;
pub mod config;
pub mod echo;
pub mod faults;
pub mod http;
pub mod http_error;
pub mod kintone;
pub mod mail;
pub mod notify;
pub mod rakuraku;
pub mod settings;
pub mod users;

pub use config::{ConfigError, ConnectorsConfig, InstanceConfig, Secret};

use cloudsign::files::{BlobSource, NoBlobs};
use config::{CloudsignConfig, HttpConfig, KintoneConfig};
use indexmap::IndexMap;
use nagare_engine::Registry;
use settings::Settings;
use std::sync::Arc;

/// The connectors every nagare binary has, unconfigured.
pub fn builtin() -> Registry {
    Connectors::new(&ConnectorsConfig::default()).registry()
}

/// The configured connector instances and their live settings.
pub struct Connectors {
    registry: Registry,
    kintone: IndexMap<String, Settings<Option<KintoneConfig>>>,
    http: IndexMap<String, Settings<HttpConfig>>,
    cloudsign: IndexMap<String, Settings<Option<CloudsignConfig>>>,
    rakuraku: IndexMap<String, Settings<Option<rakuraku::RakurakuConfig>>>,
    mail: IndexMap<String, Settings<Option<mail::SmtpConfig>>>,
    /// External instances and their operations (fixed until a restart).
    external: IndexMap<String, Vec<String>>,
    /// Names and addresses of the users file, for `users.lookup` and `notify.task`.
    users: users::Contacts,
    /// Base URL of the task list, for links in task notifications.
    public_url: Settings<Option<String>>,
}

impl Connectors {
    /// Register `echo`, every configured instance, and the default instances
    /// `http`, `kintone`, `rakuraku` and `mail` when the config does not define them.
    pub fn new(cfg: &ConnectorsConfig) -> Connectors {
        Self::with_blobs(cfg, Arc::new(NoBlobs))
    }

    /// Like [`Connectors::new`]; connectors that upload files (CloudSign) read file
    /// references through `blobs` (the engine's blob store).
    pub fn with_blobs(cfg: &ConnectorsConfig, blobs: Arc<dyn BlobSource>) -> Connectors {
        let mut c = Connectors {
            registry: Registry::default(),
            kintone: IndexMap::new(),
            http: IndexMap::new(),
            cloudsign: IndexMap::new(),
            rakuraku: IndexMap::new(),
            mail: IndexMap::new(),
            external: IndexMap::new(),
            users: users::Contacts::new(Vec::new()),
            public_url: Settings::new(None),
        };
        c.registry.register("echo", echo::Echo);
        c.registry.register("users.lookup", users::Lookup(c.users.clone()));
        for (name, inst) in &cfg.connectors {
            match inst {
                InstanceConfig::Kintone(k) => {
                    c.kintone.insert(name.clone(), Settings::new(Some(k.clone())));
                }
                InstanceConfig::Http(h) => {
                    c.http.insert(name.clone(), Settings::new(h.clone()));
                }
                InstanceConfig::Cloudsign(x) => {
                    c.cloudsign.insert(name.clone(), Settings::new(Some(x.clone())));
                }
                InstanceConfig::Rakuraku(r) => {
                    c.rakuraku.insert(name.clone(), Settings::new(Some(r.clone())));
                }
                InstanceConfig::Smtp(m) => {
                    c.mail.insert(name.clone(), Settings::new(Some(m.clone())));
                }
                InstanceConfig::External(x) => {
                    for op in &x.operations {
                        c.registry.register_external(format!("{name}.{op}"));
                    }
                    c.external.insert(name.clone(), x.operations.clone());
                }
            }
        }
        if !cfg.connectors.contains_key("kintone") {
            c.kintone.insert("kintone".into(), Settings::new(None));
        }
        if !cfg.connectors.contains_key("cloudsign") {
            c.cloudsign.insert("cloudsign".into(), Settings::new(None));
        }
        if !cfg.connectors.contains_key("http") {
            c.http.insert("http".into(), Settings::new(HttpConfig::default()));
        }
        if !cfg.connectors.contains_key("rakuraku") {
            c.rakuraku.insert("rakuraku".into(), Settings::new(None));
        }
        if !cfg.connectors.contains_key("mail") {
            c.mail.insert("mail".into(), Settings::new(None));
        }
        for (name, s) in &c.kintone {
            kintone::register(&mut c.registry, name, s.clone(), blobs.clone());
        }
        for (name, s) in &c.cloudsign {
            cloudsign::register(&mut c.registry, name, s.clone(), blobs.clone());
        }
        for (name, s) in &c.rakuraku {
            rakuraku::register(&mut c.registry, name, s.clone(), blobs.clone());
        }
        for (name, s) in &c.mail {
            mail::register(&mut c.registry, name, s.clone(), blobs.clone());
        }
        let mail_by_instance =
            c.mail.keys().filter_map(|name| Some((name.clone(), c.registry.get(&format!("{name}.send"))?))).collect();
        c.registry.register(
            nagare_engine::notify::CONNECTOR,
            notify::NotifyTask { mail: mail_by_instance, contacts: c.users.clone(), public_url: c.public_url.clone() },
        );
        for (name, s) in &c.http {
            c.registry.register(format!("{name}.request"), http::HttpConnector::new(name, s.clone()));
        }
        c
    }

    /// The registry to build the engine with.
    pub fn registry(&self) -> Registry {
        self.registry.clone()
    }

    /// Replace the settings of the instances (after fixing a token, say). The next
    /// call of each connector uses them. Adding or removing instances needs a restart,
    /// since the engine's registry is fixed when it opens.
    pub fn reload(&self, cfg: &ConnectorsConfig) -> Result<(), ConfigError> {
        let restart = |name: &str, why: &str| ConfigError::Invalid {
            instance: name.to_string(),
            reason: format!("{why}; restart to apply this change"),
        };
        for (name, inst) in &cfg.connectors {
            match inst {
                InstanceConfig::Kintone(_) if !self.kintone.contains_key(name) => {
                    return Err(restart(name, "is a new kintone instance"))
                }
                InstanceConfig::Http(_) if !self.http.contains_key(name) => {
                    return Err(restart(name, "is a new http instance"))
                }
                InstanceConfig::Cloudsign(_) if !self.cloudsign.contains_key(name) => {
                    return Err(restart(name, "is a new cloudsign instance"))
                }
                InstanceConfig::Rakuraku(_) if !self.rakuraku.contains_key(name) => {
                    return Err(restart(name, "is a new rakuraku instance"))
                }
                InstanceConfig::Smtp(_) if !self.mail.contains_key(name) => {
                    return Err(restart(name, "is a new smtp instance"))
                }
                InstanceConfig::External(x) if self.external.get(name) != Some(&x.operations) => {
                    return Err(restart(name, "is a new or changed external instance"))
                }
                _ => {}
            }
        }
        for (name, s) in &self.kintone {
            match cfg.connectors.get(name) {
                Some(InstanceConfig::Kintone(k)) => s.replace(Some(k.clone())),
                None if name == "kintone" => s.replace(None),
                _ => return Err(restart(name, "was removed or changed its type")),
            }
        }
        for (name, s) in &self.cloudsign {
            match cfg.connectors.get(name) {
                Some(InstanceConfig::Cloudsign(x)) => s.replace(Some(x.clone())),
                None if name == "cloudsign" => s.replace(None),
                _ => return Err(restart(name, "was removed or changed its type")),
            }
        }
        for (name, s) in &self.rakuraku {
            match cfg.connectors.get(name) {
                Some(InstanceConfig::Rakuraku(r)) => s.replace(Some(r.clone())),
                None if name == "rakuraku" => s.replace(None),
                _ => return Err(restart(name, "was removed or changed its type")),
            }
        }
        for (name, s) in &self.mail {
            match cfg.connectors.get(name) {
                Some(InstanceConfig::Smtp(m)) => s.replace(Some(m.clone())),
                None if name == "mail" => s.replace(None),
                _ => return Err(restart(name, "was removed or changed its type")),
            }
        }
        for name in self.external.keys() {
            if !matches!(cfg.connectors.get(name), Some(InstanceConfig::External(_))) {
                return Err(restart(name, "was removed or changed its type"));
            }
        }
        for (name, s) in &self.http {
            match cfg.connectors.get(name) {
                Some(InstanceConfig::Http(h)) => s.replace(h.clone()),
                None if name == "http" => s.replace(HttpConfig::default()),
                _ => return Err(restart(name, "was removed or changed its type")),
            }
        }
        Ok(())
    }

    /// Put the users file's contacts in force for `users.lookup` (the server calls
    /// this when it loads or reloads the file).
    pub fn set_users(&self, contacts: Vec<users::Contact>) {
        self.users.replace(contacts);
    }

    /// The base URL of the task list (`http://127.0.0.1:8080`), for links in task
    /// notifications (`<url>/api/v1/tasks/<id>`).
    pub fn set_public_url(&self, url: Option<String>) {
        self.public_url.replace(url);
    }

    /// The current settings of kintone instance `name` (`None`: not configured).
    pub fn kintone(&self, name: &str) -> Option<Arc<Option<KintoneConfig>>> {
        self.kintone.get(name).map(Settings::get)
    }

    /// The current settings of CloudSign instance `name` (`None` inside: not configured).
    pub fn cloudsign(&self, name: &str) -> Option<Arc<Option<CloudsignConfig>>> {
        self.cloudsign.get(name).map(Settings::get)
    }

    /// Names of the CloudSign instances.
    pub fn cloudsign_names(&self) -> Vec<String> {
        self.cloudsign.keys().cloned().collect()
    }

    /// Names of the kintone instances.
    pub fn kintone_names(&self) -> Vec<String> {
        self.kintone.keys().cloned().collect()
    }
}
