//! What the agent tells the world: calls appearing, changing and going,
//! refusals, locks, registrations. The agent announces through this trait and
//! knows nothing of the bus; the D-Bus service implements it (signals,
//! properties, call objects), unit tests record it.

use std::sync::Arc;

use doorphone_interfaces::sip::{AccountStatus, CallState, EndReason};

use crate::call::CallShared;
use crate::ports::BoxFuture;

pub enum Event<'a> {
    /// A call began: its object appears.
    CallAdded(&'a Arc<CallShared>),
    /// A call changed state, for this reason.
    CallState(&'a Arc<CallShared>, CallState, &'a str),
    /// A call ended: its object goes; `was_active` when it was the answered
    /// call, so that `ActiveCall` changed with `Calls`.
    CallRemoved {
        call: &'a Arc<CallShared>,
        was_active: bool,
    },
    /// The answered call is another (or none).
    ActiveCallChanged,
    /// An incoming call was refused by the policy.
    CallRefused {
        caller: &'a str,
        code: u16,
        reason: EndReason,
    },
    /// Door codes are locked for `caller` until `until` (Unix ms).
    DoorCodesLocked {
        caller: &'a str,
        until: u64,
    },
    AccountChanged(&'a AccountStatus),
    ConfigRevision,
    ButtonCallFinished {
        button: u16,
        outcome: &'a str,
        answered_by: &'a str,
    },
    ActionFailed {
        action: &'a str,
        error: &'a str,
    },
}

pub trait Announcer: Send + Sync {
    fn announce<'a>(&'a self, event: Event<'a>) -> BoxFuture<'a, ()>;
}
