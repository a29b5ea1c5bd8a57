//! Why a task is open again: the send-back that reopened it (who, when, comment),
//! read from the history so the person who gets the work back sees it with the task.

use crate::engine::{Engine, EngineError};
use crate::runtime::{HistoryEntry, HistoryEvent, Task};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// A send-back that opened a task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SendBackNote {
    /// Who sent the work back.
    pub by: Option<String>,
    /// When.
    pub at: DateTime<Utc>,
    /// The reason given to the person who gets the task again.
    pub comment: String,
    /// The task that was sent back (its node).
    pub from_node: Option<String>,
}

/// The send-back that opened `task` in `history`: the send-back line to the task's
/// node that comes right before its `task_opened` line (nothing else completed
/// in between).
pub fn send_back_note(task: &Task, history: &[HistoryEntry]) -> Option<SendBackNote> {
    let opened =
        history.iter().position(|h| matches!(&h.event, HistoryEvent::TaskOpened { task: t } if *t == task.id))?;
    for h in history[..opened].iter().rev() {
        match &h.event {
            HistoryEvent::SentBack { to, comment, .. } if *to == task.node => {
                return Some(SendBackNote {
                    by: h.user.clone(),
                    at: h.at,
                    comment: comment.clone(),
                    from_node: h.node.clone(),
                })
            }
            HistoryEvent::SentBack { .. } | HistoryEvent::TaskCompleted { .. } | HistoryEvent::TaskOpened { .. } => {
                return None
            }
            _ => {}
        }
    }
    None
}

impl Engine {
    /// The send-back that opened `task`, if one did.
    pub fn send_back_of(&self, task: &Task) -> Result<Option<SendBackNote>, EngineError> {
        Ok(send_back_note(task, &self.history(task.instance)?))
    }
}
