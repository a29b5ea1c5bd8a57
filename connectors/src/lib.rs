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
//!
//! # Features
//!
//! Each service is a cargo feature, all on by default: `http` (`http.request`
//! and the HTTP client), `kintone`, `cloudsign`, `rakuraku`, `mail`, and
//! `emulators` (the local emulators of the enabled services, the SMTP sink). With
//! `default-features = false` the crate has the registry builder, `echo`,
//! `users.lookup`, `notify.task` and external instances, and no HTTP stack
//! (neither axum nor reqwest); a config file that names a service left out is
//! refused (`unknown variant`).

#[cfg(feature = "cloudsign")]
pub mod cloudsign;
/// Without the `cloudsign` feature only its file references (the blob source
/// every connector that reads files uses) are built.
#[cfg(not(feature = "cloudsign"))]
pub mod cloudsign {
    #[path = "files.rs"]
    pub mod files;
}
pub mod config;
pub mod echo;
#[cfg(feature = "emulators")]
pub mod faults;
#[cfg(feature = "http")]
pub mod http;
#[cfg(feature = "http")]
pub mod http_error;
#[cfg(feature = "kintone")]
pub mod kintone;
#[cfg(feature = "mail")]
pub mod mail;
pub mod notify;
#[cfg(feature = "rakuraku")]
pub mod rakuraku;
pub mod settings;
pub mod users;

pub use config::{ConfigError, ConnectorsConfig, InstanceConfig, Secret};

use cloudsign::files::{BlobSource, NoBlobs};
#[cfg(feature = "cloudsign")]
use config::CloudsignConfig;
#[cfg(feature = "http")]
use config::HttpConfig;
#[cfg(feature = "kintone")]
use config::KintoneConfig;
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
    #[cfg(feature = "kintone")]
    kintone: IndexMap<String, Settings<Option<KintoneConfig>>>,
    #[cfg(feature = "http")]
    http: IndexMap<String, Settings<HttpConfig>>,
    #[cfg(feature = "cloudsign")]
    cloudsign: IndexMap<String, Settings<Option<CloudsignConfig>>>,
    #[cfg(feature = "rakuraku")]
    rakuraku: IndexMap<String, Settings<Option<rakuraku::RakurakuConfig>>>,
    #[cfg(feature = "mail")]
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
        #[cfg(not(any(feature = "kintone", feature = "cloudsign", feature = "rakuraku", feature = "mail")))]
        let _ = blobs; // no connector that reads files is built
        let mut c = Connectors {
            registry: Registry::default(),
            #[cfg(feature = "kintone")]
            kintone: IndexMap::new(),
            #[cfg(feature = "http")]
            http: IndexMap::new(),
            #[cfg(feature = "cloudsign")]
            cloudsign: IndexMap::new(),
            #[cfg(feature = "rakuraku")]
            rakuraku: IndexMap::new(),
            #[cfg(feature = "mail")]
            mail: IndexMap::new(),
            external: IndexMap::new(),
            users: users::Contacts::new(Vec::new()),
            public_url: Settings::new(None),
        };
        c.registry.register("echo", echo::Echo);
        c.registry.register("users.lookup", users::Lookup(c.users.clone()));
        for (name, inst) in &cfg.connectors {
            match inst {
                #[cfg(feature = "kintone")]
                InstanceConfig::Kintone(k) => {
                    c.kintone.insert(name.clone(), Settings::new(Some(k.clone())));
                }
                #[cfg(feature = "http")]
                InstanceConfig::Http(h) => {
                    c.http.insert(name.clone(), Settings::new(h.clone()));
                }
                #[cfg(feature = "cloudsign")]
                InstanceConfig::Cloudsign(x) => {
                    c.cloudsign.insert(name.clone(), Settings::new(Some(x.clone())));
                }
                #[cfg(feature = "rakuraku")]
                InstanceConfig::Rakuraku(r) => {
                    c.rakuraku.insert(name.clone(), Settings::new(Some(r.clone())));
                }
                #[cfg(feature = "mail")]
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
        #[cfg(feature = "kintone")]
        if !cfg.connectors.contains_key("kintone") {
            c.kintone.insert("kintone".into(), Settings::new(None));
        }
        #[cfg(feature = "cloudsign")]
        if !cfg.connectors.contains_key("cloudsign") {
            c.cloudsign.insert("cloudsign".into(), Settings::new(None));
        }
        #[cfg(feature = "http")]
        if !cfg.connectors.contains_key("http") {
            c.http.insert("http".into(), Settings::new(HttpConfig::default()));
        }
        #[cfg(feature = "rakuraku")]
        if !cfg.connectors.contains_key("rakuraku") {
            c.rakuraku.insert("rakuraku".into(), Settings::new(None));
        }
        #[cfg(feature = "mail")]
        if !cfg.connectors.contains_key("mail") {
            c.mail.insert("mail".into(), Settings::new(None));
        }
        #[cfg(feature = "kintone")]
        for (name, s) in &c.kintone {
            kintone::register(&mut c.registry, name, s.clone(), blobs.clone());
        }
        #[cfg(feature = "cloudsign")]
        for (name, s) in &c.cloudsign {
            cloudsign::register(&mut c.registry, name, s.clone(), blobs.clone());
        }
        #[cfg(feature = "rakuraku")]
        for (name, s) in &c.rakuraku {
            rakuraku::register(&mut c.registry, name, s.clone(), blobs.clone());
        }
        #[cfg(feature = "mail")]
        for (name, s) in &c.mail {
            mail::register(&mut c.registry, name, s.clone(), blobs.clone());
        }
        #[cfg(feature = "mail")]
        let mail_by_instance =
            c.mail.keys().filter_map(|name| Some((name.clone(), c.registry.get(&format!("{name}.send"))?))).collect();
        #[cfg(not(feature = "mail"))]
        let mail_by_instance = IndexMap::new();
        c.registry.register(
            nagare_engine::notify::CONNECTOR,
            notify::NotifyTask { mail: mail_by_instance, contacts: c.users.clone(), public_url: c.public_url.clone() },
        );
        #[cfg(feature = "http")]
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
                #[cfg(feature = "kintone")]
                InstanceConfig::Kintone(_) if !self.kintone.contains_key(name) => {
                    return Err(restart(name, "is a new kintone instance"))
                }
                #[cfg(feature = "http")]
                InstanceConfig::Http(_) if !self.http.contains_key(name) => {
                    return Err(restart(name, "is a new http instance"))
                }
                #[cfg(feature = "cloudsign")]
                InstanceConfig::Cloudsign(_) if !self.cloudsign.contains_key(name) => {
                    return Err(restart(name, "is a new cloudsign instance"))
                }
                #[cfg(feature = "rakuraku")]
                InstanceConfig::Rakuraku(_) if !self.rakuraku.contains_key(name) => {
                    return Err(restart(name, "is a new rakuraku instance"))
                }
                #[cfg(feature = "mail")]
                InstanceConfig::Smtp(_) if !self.mail.contains_key(name) => {
                    return Err(restart(name, "is a new smtp instance"))
                }
                InstanceConfig::External(x) if self.external.get(name) != Some(&x.operations) => {
                    return Err(restart(name, "is a new or changed external instance"))
                }
                _ => {}
            }
        }
        #[cfg(feature = "kintone")]
        for (name, s) in &self.kintone {
            match cfg.connectors.get(name) {
                Some(InstanceConfig::Kintone(k)) => s.replace(Some(k.clone())),
                None if name == "kintone" => s.replace(None),
                _ => return Err(restart(name, "was removed or changed its type")),
            }
        }
        #[cfg(feature = "cloudsign")]
        for (name, s) in &self.cloudsign {
            match cfg.connectors.get(name) {
                Some(InstanceConfig::Cloudsign(x)) => s.replace(Some(x.clone())),
                None if name == "cloudsign" => s.replace(None),
                _ => return Err(restart(name, "was removed or changed its type")),
            }
        }
        #[cfg(feature = "rakuraku")]
        for (name, s) in &self.rakuraku {
            match cfg.connectors.get(name) {
                Some(InstanceConfig::Rakuraku(r)) => s.replace(Some(r.clone())),
                None if name == "rakuraku" => s.replace(None),
                _ => return Err(restart(name, "was removed or changed its type")),
            }
        }
        #[cfg(feature = "mail")]
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
        #[cfg(feature = "http")]
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
    #[cfg(feature = "kintone")]
    pub fn kintone(&self, name: &str) -> Option<Arc<Option<KintoneConfig>>> {
        self.kintone.get(name).map(Settings::get)
    }

    /// The current settings of CloudSign instance `name` (`None` inside: not configured).
    #[cfg(feature = "cloudsign")]
    pub fn cloudsign(&self, name: &str) -> Option<Arc<Option<CloudsignConfig>>> {
        self.cloudsign.get(name).map(Settings::get)
    }

    /// Names of the CloudSign instances.
    #[cfg(feature = "cloudsign")]
    pub fn cloudsign_names(&self) -> Vec<String> {
        self.cloudsign.keys().cloned().collect()
    }

    /// Names of the kintone instances.
    #[cfg(feature = "kintone")]
    pub fn kintone_names(&self) -> Vec<String> {
        self.kintone.keys().cloned().collect()
    }
}
