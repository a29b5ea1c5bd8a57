//! `notify.task`: the mail about a user task that a lane's `notify:` asks for
//! (opened, sent back, overdue). The engine schedules it as a job with the task in
//! the input; this connector finds the recipients in the users file (the assignee,
//! else every member of the task's groups, via [`crate::users`]) and sends one mail
//! through the lane's `via` mail instance (`mail.send`), with the title, the due
//! date and a link to the task.
//!
//! Nobody with an address is not an error (logged, result `sent: false`): a
//! notification never becomes an incident.

use crate::settings::Settings;
use crate::users::{Contact, Contacts};
use indexmap::IndexMap;
use nagare_engine::connector::BoxFuture;
use nagare_engine::{Call, Connector, ConnectorError};
use serde_json::{json, Value};
use std::sync::Arc;

/// Most recipients of one notification (a large group gets one mail, in Bcc).
pub const MAX_RECIPIENTS: usize = 100;

pub struct NotifyTask {
    /// Mail connectors by instance name (`mail` → its `mail.send`).
    pub mail: IndexMap<String, Arc<dyn Connector>>,
    pub contacts: Contacts,
    /// Base URL of the task list (`https://nagare.example.com`); links are
    /// `<base>/api/v1/tasks/<id>`. None: no link.
    pub public_url: Settings<Option<String>>,
}

fn fatal(m: impl Into<String>) -> ConnectorError {
    ConnectorError::Fatal(m.into())
}

/// Who hears about the task: its assignee, else the members of its groups (a
/// task offered to candidates lists `user:<id>` groups: those users).
fn recipients(contacts: &[Contact], task: &Value) -> Vec<String> {
    let assignee = task["assignee"].as_str();
    let groups: Vec<&str> =
        task["groups"].as_array().map(|g| g.iter().filter_map(Value::as_str).collect()).unwrap_or_default();
    contacts
        .iter()
        .filter(|c| match assignee {
            Some(a) => c.id == a,
            None => {
                c.groups.iter().any(|g| groups.contains(&g.as_str()))
                    || groups.contains(&nagare_engine::org::candidate_group(&c.id).as_str())
            }
        })
        .filter_map(Contact::mailbox)
        .take(MAX_RECIPIENTS)
        .collect()
}

/// Subject and text of the mail.
pub fn compose(event: &str, task: &Value, due_local: Option<&str>, link: Option<&str>) -> (String, String) {
    let title = task["title"].as_str().unwrap_or("");
    let (tag, lead) = match event {
        "overdue" => ("期限切れ", "次のタスクが期限を過ぎています。"),
        "send_back" => ("差し戻し", "次のタスクが差し戻されました。"),
        _ => ("新しいタスク", "次のタスクが割り当てられました。"),
    };
    let mut text = format!("{lead}\n\nタスク: {title}\n");
    text.push_str(&format!("レーン: {}\n", task["lane"].as_str().unwrap_or("")));
    text.push_str(&format!("期限: {}\n", due_local.unwrap_or("なし")));
    text.push_str(&format!("案件: {} #{}\n", task["process"].as_str().unwrap_or(""), task["instance"]));
    if let Some(l) = link {
        text.push_str(&format!("\n{l}\n"));
    }
    (format!("[{tag}] {title}"), text)
}

impl NotifyTask {
    async fn run(&self, call: &Call) -> Result<Value, ConnectorError> {
        let input = &call.input;
        let event = input["event"].as_str().ok_or_else(|| fatal("`event` is missing"))?;
        let task = &input["task"];
        let via = input["via"].as_str().unwrap_or("mail");
        let mail = self.mail.get(via).ok_or_else(|| {
            fatal(format!("`via: {via}`: no mail connector instance `{via}` in the config (type: smtp)"))
        })?;
        let to = recipients(&self.contacts.get(), task);
        if to.is_empty() {
            tracing::warn!(task = %task["id"], event, "task notification: nobody with an `email:` in the users file");
            return Ok(json!({ "sent": false, "recipients": 0 }));
        }
        let link =
            self.public_url.get().as_ref().as_ref().map(|base| {
                format!("{}/api/v1/tasks/{}", base.trim_end_matches('/'), task["id"].as_str().unwrap_or(""))
            });
        let (subject, text) = compose(event, task, input["due_local"].as_str(), link.as_deref());
        // One recipient: To; several: Bcc (members need not see each other).
        let mut with = json!({ "subject": subject, "text": text });
        if to.len() == 1 {
            with["to"] = json!(to);
        } else {
            with["bcc"] = json!(to);
        }
        let send = Call { connector: format!("{via}.send"), input: with, ..call.clone() };
        let out = mail.call(&send).await?;
        Ok(json!({ "sent": true, "recipients": to.len(), "mail": out }))
    }
}

impl Connector for NotifyTask {
    fn call<'a>(&'a self, call: &'a Call) -> BoxFuture<'a, Result<Value, ConnectorError>> {
        Box::pin(self.run(call))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_assignee_else_the_group() {
        let c = |id: &str, g: &str| Contact {
            id: id.into(),
            name: None,
            email: Some(format!("{id}@example.com")),
            groups: vec![g.into()],
        };
        let book = vec![c("a", "acc"), c("b", "acc"), c("m", "mgr")];
        let task = json!({"groups": ["acc"], "assignee": null});
        assert_eq!(recipients(&book, &task), vec!["a@example.com", "b@example.com"]);
        let task = json!({"groups": ["acc"], "assignee": "m"});
        assert_eq!(recipients(&book, &task), vec!["m@example.com"]);
        let offered = json!({"groups": ["user:b", "user:m"], "assignee": null});
        assert_eq!(recipients(&book, &offered), vec!["b@example.com", "m@example.com"], "candidates");
        let (s, t) = compose(
            "overdue",
            &json!({"title": "承認", "lane": "経理", "process": "p", "instance": 3}),
            Some("2026-12-01 09:00 JST"),
            Some("http://x/api/v1/tasks/3-1"),
        );
        assert_eq!(s, "[期限切れ] 承認");
        assert!(t.contains("期限: 2026-12-01 09:00 JST") && t.contains("http://x/api/v1/tasks/3-1"), "{t}");
    }
}
