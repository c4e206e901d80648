//! An outgoing call's targets ringing as its plan says: every target at once
//! (a group call, or a dial-plan prefix forked to its targets) for the max
//! dial-out time, or one after another (a sequence call), each for its
//! time-out; a callee's refusal ends its branch or the whole plan.

use std::time::Duration;

use tokio::time::Instant;

/// How the targets of an outgoing call ring.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plan {
    /// All at once for `ring_for`, counted from the INVITEs sent; a refusal
    /// ends every branch when `refusal_ends_all`, else only its own.
    Group {
        refusal_ends_all: bool,
        ring_for: Duration,
    },
    /// One after another, each for `each` from its INVITE sent; a refusal
    /// ends the plan when `refusal_stops`, else the next number is called at
    /// once.
    Sequence { each: Duration, refusal_stops: bool },
}

/// How an outgoing call's ringing ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// This target answered.
    Answered(usize),
    /// Nobody answered in time.
    NoAnswer,
    /// Refused by a callee (this status).
    Refused(u16),
    /// No branch could be placed or kept (no route, 5xx).
    Failed,
    /// Hung up here before an answer.
    Cancelled,
}

impl Outcome {
    /// The word `ButtonCallFinished` gives.
    pub fn name(self) -> &'static str {
        match self {
            Outcome::Answered(_) => "answered",
            Outcome::NoAnswer => "no_answer",
            Outcome::Refused(_) => "refused",
            Outcome::Failed => "failed",
            Outcome::Cancelled => "cancelled",
        }
    }
}

/// How one branch ended before an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BranchEnd {
    /// A final answer with this code (4xx and 6xx are refusals, 5xx a failure).
    Code(u16),
    /// No answer could be had (no route, time-out, transport error).
    Failed,
}

/// What the driver does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Send the INVITE of this target.
    Call(usize),
    /// Cancel this target's INVITE.
    Cancel(usize),
    /// The plan is over.
    Over(Outcome),
}

/// The targets of one outgoing call.
#[derive(Debug)]
pub struct Dialling {
    plan: Plan,
    routes: usize,
    live: Vec<bool>,
    /// The next target a sequence calls.
    next: usize,
    deadline: Option<Instant>,
    refused: Option<u16>,
    timed_out: bool,
    over: bool,
}

impl Dialling {
    pub fn new(plan: Plan, routes: usize) -> Dialling {
        Dialling {
            plan,
            routes,
            live: vec![false; routes],
            next: 0,
            deadline: None,
            refused: None,
            timed_out: false,
            over: false,
        }
    }

    /// The first INVITEs, at `now`.
    pub fn start(&mut self, now: Instant) -> Vec<Step> {
        match self.plan {
            Plan::Group { ring_for, .. } => {
                self.deadline = Some(now + ring_for);
                self.next = self.routes;
                (0..self.routes)
                    .map(|i| {
                        self.live[i] = true;
                        Step::Call(i)
                    })
                    .collect()
            }
            Plan::Sequence { .. } => self.call_next(now),
        }
    }

    fn call_next(&mut self, now: Instant) -> Vec<Step> {
        match self.plan {
            Plan::Sequence { each, .. } if self.next < self.routes => {
                let i = self.next;
                self.next += 1;
                self.live[i] = true;
                self.deadline = Some(now + each);
                vec![Step::Call(i)]
            }
            _ => self.finish(),
        }
    }

    fn finish(&mut self) -> Vec<Step> {
        self.over = true;
        self.deadline = None;
        let outcome = match (self.refused, self.timed_out) {
            (Some(code), _) => Outcome::Refused(code),
            (None, true) => Outcome::NoAnswer,
            (None, false) => Outcome::Failed,
        };
        vec![Step::Over(outcome)]
    }

    fn cancel_live(&mut self, keep: Option<usize>) -> Vec<Step> {
        let mut steps = Vec::new();
        for (i, live) in self.live.iter_mut().enumerate() {
            if *live && Some(i) != keep {
                *live = false;
                steps.push(Step::Cancel(i));
            }
        }
        steps
    }

    pub fn is_over(&self) -> bool {
        self.over
    }

    /// Whether target `i` still rings.
    pub fn live(&self, i: usize) -> bool {
        self.live.get(i).copied().unwrap_or(false)
    }

    /// When [`Dialling::due`] has something to say.
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// Target `i`'s INVITE left at `now`: its time counts from here (the
    /// group's, from the first INVITE that left).
    pub fn sent(&mut self, i: usize, now: Instant, first: bool) {
        if !self.live(i) {
            return;
        }
        match self.plan {
            Plan::Group { ring_for, .. } if first => self.deadline = Some(now + ring_for),
            Plan::Sequence { each, .. } if i + 1 == self.next => {
                self.deadline = Some(now + each);
            }
            _ => {}
        }
    }

    /// The time at `now`: ringing that lasted its time is cancelled; a
    /// sequence goes on with its next number.
    pub fn due(&mut self, now: Instant) -> Vec<Step> {
        if self.over || self.deadline.is_none_or(|d| d > now) {
            return Vec::new();
        }
        self.timed_out = true;
        let mut steps = self.cancel_live(None);
        steps.extend(match self.plan {
            Plan::Group { .. } => self.finish(),
            Plan::Sequence { .. } => self.call_next(now),
        });
        steps
    }

    /// Target `i` answered: the others are cancelled. `None` when `i` no
    /// longer rings (its answer came too late: the driver hangs it up).
    pub fn answered(&mut self, i: usize) -> Option<Vec<Step>> {
        if self.over || !self.live(i) {
            return None;
        }
        let mut steps = self.cancel_live(Some(i));
        self.live[i] = false;
        self.over = true;
        self.deadline = None;
        steps.push(Step::Over(Outcome::Answered(i)));
        Some(steps)
    }

    /// Target `i` ended without an answer at `now`.
    pub fn ended(&mut self, i: usize, end: BranchEnd, now: Instant) -> Vec<Step> {
        if self.over || !self.live(i) {
            return Vec::new();
        }
        self.live[i] = false;
        let refusal = match end {
            BranchEnd::Code(code) if (400..500).contains(&code) || code >= 600 => Some(code),
            _ => None,
        };
        if let Some(code) = refusal {
            self.refused = Some(code);
            let stop = match self.plan {
                Plan::Group {
                    refusal_ends_all, ..
                } => refusal_ends_all,
                Plan::Sequence { refusal_stops, .. } => refusal_stops,
            };
            if stop {
                let mut steps = self.cancel_live(None);
                steps.extend(self.finish());
                return steps;
            }
        }
        if self.live.iter().any(|l| *l) {
            return Vec::new();
        }
        self.call_next(now)
    }

    /// Hung up here before an answer.
    pub fn hangup(&mut self) -> Vec<Step> {
        if self.over {
            return Vec::new();
        }
        let mut steps = self.cancel_live(None);
        self.over = true;
        self.deadline = None;
        steps.push(Step::Over(Outcome::Cancelled));
        steps
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    fn group(ends_all: bool, ring_for: u64) -> Plan {
        Plan::Group {
            refusal_ends_all: ends_all,
            ring_for: S * ring_for as u32,
        }
    }

    fn sequence(each: u64, stops: bool) -> Plan {
        Plan::Sequence {
            each: S * each as u32,
            refusal_stops: stops,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_group_rings_everyone_and_the_first_answer_cancels_the_others() {
        let t0 = Instant::now();
        let mut d = Dialling::new(group(false, 60), 3);
        assert_eq!(
            d.start(t0),
            vec![Step::Call(0), Step::Call(1), Step::Call(2)]
        );
        assert_eq!(
            d.answered(1),
            Some(vec![
                Step::Cancel(0),
                Step::Cancel(2),
                Step::Over(Outcome::Answered(1))
            ])
        );
        assert!(d.is_over());
        // A late answer of another branch is not the plan's.
        assert_eq!(d.answered(2), None);
    }

    #[tokio::test(start_paused = true)]
    async fn the_max_dial_out_time_counts_from_the_invite_sent() {
        let t0 = Instant::now();
        let mut d = Dialling::new(group(false, 5), 2);
        d.start(t0);
        // The INVITEs leave 700 ms later (media, the first call after start).
        let sent = t0 + Duration::from_millis(700);
        d.sent(0, sent, true);
        d.sent(1, sent + Duration::from_millis(1), false);
        assert_eq!(d.deadline(), Some(sent + 5 * S));
        assert_eq!(d.due(sent + 5 * S - Duration::from_millis(1)), vec![]);
        assert_eq!(
            d.due(sent + 5 * S),
            vec![
                Step::Cancel(0),
                Step::Cancel(1),
                Step::Over(Outcome::NoAnswer)
            ]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_group_refusal_ends_its_branch_or_every_branch() {
        let t0 = Instant::now();
        let mut d = Dialling::new(group(false, 60), 3);
        d.start(t0);
        assert_eq!(d.ended(0, BranchEnd::Code(486), t0), vec![]);
        assert!(d.live(1) && d.live(2));
        let mut d = Dialling::new(group(true, 60), 3);
        d.start(t0);
        assert_eq!(
            d.ended(0, BranchEnd::Code(603), t0),
            vec![
                Step::Cancel(1),
                Step::Cancel(2),
                Step::Over(Outcome::Refused(603))
            ]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn every_branch_ending_without_an_answer_ends_the_group() {
        let t0 = Instant::now();
        let mut d = Dialling::new(group(false, 60), 2);
        d.start(t0);
        assert_eq!(d.ended(0, BranchEnd::Code(503), t0), vec![]);
        assert_eq!(
            d.ended(1, BranchEnd::Failed, t0),
            vec![Step::Over(Outcome::Failed)],
            "5xx and no route are failures, not refusals"
        );
        let mut d = Dialling::new(group(false, 60), 2);
        d.start(t0);
        d.ended(0, BranchEnd::Code(486), t0);
        assert_eq!(
            d.ended(1, BranchEnd::Failed, t0),
            vec![Step::Over(Outcome::Refused(486))]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_sequence_moves_on_after_each_timeout_counted_from_its_invite() {
        let t0 = Instant::now();
        let mut d = Dialling::new(sequence(5, false), 3);
        assert_eq!(d.start(t0), vec![Step::Call(0)]);
        let sent = t0 + Duration::from_millis(300);
        d.sent(0, sent, true);
        assert_eq!(d.due(sent + 5 * S - Duration::from_millis(1)), vec![]);
        let second = sent + 5 * S;
        assert_eq!(d.due(second), vec![Step::Cancel(0), Step::Call(1)]);
        d.sent(1, second, false);
        assert_eq!(d.deadline(), Some(second + 5 * S));
        assert_eq!(d.answered(1), Some(vec![Step::Over(Outcome::Answered(1))]));
    }

    #[tokio::test(start_paused = true)]
    async fn a_sequence_refusal_calls_the_next_at_once_or_ends_the_plan() {
        let t0 = Instant::now();
        let mut d = Dialling::new(sequence(30, false), 2);
        d.start(t0);
        let at = t0 + 2 * S;
        assert_eq!(d.ended(0, BranchEnd::Code(486), at), vec![Step::Call(1)]);
        assert_eq!(d.deadline(), Some(at + 30 * S));
        assert_eq!(
            d.due(at + 30 * S),
            vec![Step::Cancel(1), Step::Over(Outcome::Refused(486))],
            "a refusal earlier in the plan is its outcome"
        );
        let mut d = Dialling::new(sequence(30, true), 2);
        d.start(t0);
        assert_eq!(
            d.ended(0, BranchEnd::Code(486), t0),
            vec![Step::Over(Outcome::Refused(486))]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_hang_up_here_cancels_what_rings() {
        let t0 = Instant::now();
        let mut d = Dialling::new(group(false, 60), 2);
        d.start(t0);
        assert_eq!(
            d.hangup(),
            vec![
                Step::Cancel(0),
                Step::Cancel(1),
                Step::Over(Outcome::Cancelled)
            ]
        );
        assert_eq!(d.hangup(), vec![]);
    }
}
