//! The life of one stream, and the only way one goes on. A stream is undecided
//! from its request headers until the pipeline decides; only a decision moves it:
//! allowed (its changes applied, it continues) or answered (one local reply).
//!
//! Every request callback the host brings (headers, body chunks, trailers, the
//! tick that revisits a held stream) goes through `Streams` and gets a `Step`.
//! The one step that lets the host continue a request carries a `Go`, which
//! only this module makes, and only for a stream it has marked allowed. An
//! undecided stream's body and trailers are held whatever the host's settings
//! say: Envoy with `allow_on_headers_stop_iteration` brings body chunks to a
//! filter that stopped the headers, and a `Continue` there would send the whole
//! request upstream, undecided.
//!
//! ```text
//!   headers ──decide──> Allowed ──> body, trailers: continue
//!      │       └──────> Answered ─> body, trailers: held (the reply is on its way)
//!      └─> Undecided ─┬─ Waiting (keys, a document, the rate-limit engine's answer):
//!                     │    body, trailers held; decided again on a tick (or carried out
//!                     │    as decided, on the engine's answer), or answered when the wait is over
//!                     └─ ReadingBody: chunks held until the body is complete
//!                          (or over its bound, or its deadline), then decided
//! ```

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use crate::jwt::ProviderId;
use crate::pipeline::limits::Quota;
use crate::pipeline::shape::UpstreamChanges;
use crate::reply::LocalReply;

/// What the host does after a request callback.
#[must_use]
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// Keep the stream where it is: headers and trailers stop, body chunks are buffered.
    Hold,
    /// Answer with this reply; nothing of the request goes upstream.
    Answer(LocalReply),
    /// The stream was decided allowed: apply the changes, then continue.
    Continue(Go),
}

/// The permission to continue a request: made only here, for a stream marked allowed.
#[derive(Debug, PartialEq, Eq)]
pub struct Go {
    /// The changes to the request, on the step that decided it (none after).
    changes: Option<UpstreamChanges>,
}

impl Go {
    /// The changes to apply before the request continues, if this step decided it.
    pub fn changes(&self) -> Option<&UpstreamChanges> {
        self.changes.as_ref()
    }
}

/// What an undecided stream waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Awaited {
    /// A provider's keys: the first ones, or a refetch for an unknown `kid`.
    Keys {
        /// Whose keys.
        provider: ProviderId,
        /// A refetch for an unknown `kid` (not the first fetch).
        refetch: bool,
    },
    /// The remote revocation list's first fetch.
    RevocationList,
    /// A credential store's first fetch (`api_keys.remote`, `basic.remote`): a credential nothing configured holds.
    Store(crate::remote::StoreId),
    /// An introspection endpoint's answer about a token (stored under `key`, for every worker).
    Introspection {
        /// Whose endpoint.
        provider: ProviderId,
        /// The token's key in the shared answers.
        key: u128,
    },
    /// The fleet's rate-limit engine's answer about a request decided here (the plugin
    /// keeps what the decision was: its changes, or its refusal).
    Engine,
}

/// A request held for something on its way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Waiting {
    /// What it waits for.
    pub awaited: Awaited,
    /// When it was first held.
    pub since_ms: u64,
    /// When the wait is over (then it is answered 503).
    pub deadline_ms: u64,
    /// The awaited document's events when the request was last decided: it is
    /// decided again when they change.
    pub events_seen: u64,
}

/// Why a request's body is read before it is decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodyPurpose {
    /// A token request: the endpoint answers it.
    TokenRequest(crate::token_endpoint::grant::Presented),
    /// A form whose field may hold the API key (`api_keys.form_field`): decided again with it.
    FormKey(Box<crate::request::HeldRequest>),
}

/// The most of a form body read for an API key.
pub const MAX_FORM_BYTES: usize = 64 * 1024;

impl BodyPurpose {
    /// The most of the body it reads: past it, the read is over (and answered 413).
    pub fn bound(&self) -> usize {
        match self {
            BodyPurpose::TokenRequest(_) => crate::token_endpoint::MAX_BODY_BYTES,
            BodyPurpose::FormKey(_) => MAX_FORM_BYTES,
        }
    }
}

#[derive(Debug)]
enum Fate {
    Undecided(Pending),
    Allowed,
    Answered,
}

#[derive(Debug)]
enum Pending {
    /// Between the headers and their decision (nothing awaited yet).
    Deciding,
    Waiting(Waiting),
    ReadingBody {
        purpose: BodyPurpose,
        deadline_ms: u64,
    },
}

/// One stream's state, and what it gives back when it ends.
#[derive(Debug)]
struct Stream {
    fate: Fate,
    /// When it was first held or began to read its body: it counts as held.
    held_since_ms: Option<u64>,
    /// The limit key of the slot in flight it holds, given back when it ends.
    in_flight: Option<u64>,
    /// The quota its response shows (`limits.expose_headers`).
    quota: Option<Quota>,
}

/// What a body chunk or the trailers mean for a stream.
#[derive(Debug, PartialEq, Eq)]
pub enum BodyEvent {
    /// The step is known without the body.
    Step(Step),
    /// The stream reads its body and it is complete (or over its bound): read it and decide.
    Complete(BodyPurpose),
}

/// Host-assigned context ids are small distinct integers, not attacker input:
/// they need no SipHash (a map lookup on every callback).
#[derive(Default)]
pub struct ContextIdHasher(u64);

impl Hasher for ContextIdHasher {
    fn finish(&self) -> u64 {
        // Fibonacci hashing spreads consecutive ids over the table's buckets.
        self.0.wrapping_mul(0x9E37_79B9_7F4A_7C15)
    }
    fn write(&mut self, bytes: &[u8]) {
        for byte in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*byte);
        }
    }
    fn write_u32(&mut self, id: u32) {
        self.0 = u64::from(id);
    }
}

/// Every open stream of one VM, by HTTP context id.
#[derive(Debug, Default)]
pub struct Streams {
    streams: HashMap<u32, Stream, BuildHasherDefault<ContextIdHasher>>,
}

impl Streams {
    /// A stream's headers arrived: it is undecided. (Headers come once; a repeat
    /// starts it over, still undecided.)
    pub fn begin(&mut self, context_id: u32) {
        let stream =
            Stream { fate: Fate::Undecided(Pending::Deciding), held_since_ms: None, in_flight: None, quota: None };
        self.streams.insert(context_id, stream);
    }

    /// The pipeline allowed it: it continues with these changes.
    pub fn allow(&mut self, context_id: u32, changes: UpstreamChanges) -> Step {
        match self.streams.get_mut(&context_id) {
            Some(stream) if matches!(stream.fate, Fate::Undecided(_)) => {
                stream.fate = Fate::Allowed;
                Step::Continue(Go { changes: Some(changes) })
            }
            // Decided already, or never begun: never a second decision.
            _ => Step::Answer(LocalReply::host_unavailable()),
        }
    }

    /// The filter answers it.
    pub fn answer(&mut self, context_id: u32, reply: LocalReply) -> Step {
        if let Some(stream) = self.streams.get_mut(&context_id) {
            stream.fate = Fate::Answered;
        }
        Step::Answer(reply)
    }

    /// It waits for something on its way. Keeps the time it was first held.
    pub fn wait(&mut self, context_id: u32, waiting: Waiting) -> Step {
        let Some(stream) = self.streams.get_mut(&context_id) else {
            return Step::Answer(LocalReply::host_unavailable());
        };
        stream.held_since_ms.get_or_insert(waiting.since_ms);
        stream.fate = Fate::Undecided(Pending::Waiting(waiting));
        Step::Hold
    }

    /// It reads its body before it is decided, until `deadline_ms` at the latest.
    pub fn read_body(&mut self, context_id: u32, purpose: BodyPurpose, now_ms: u64, deadline_ms: u64) -> Step {
        let Some(stream) = self.streams.get_mut(&context_id) else {
            return Step::Answer(LocalReply::host_unavailable());
        };
        stream.held_since_ms.get_or_insert(now_ms);
        stream.fate = Fate::Undecided(Pending::ReadingBody { purpose, deadline_ms });
        Step::Hold
    }

    /// A body chunk (`body_size`: the whole body buffered so far) or, with
    /// `end_of_stream`, its end; past its purpose's bound a body read is complete enough.
    pub fn on_body(&mut self, context_id: u32, body_size: usize, end_of_stream: bool) -> BodyEvent {
        let Some(stream) = self.streams.get_mut(&context_id) else {
            return BodyEvent::Step(Step::Answer(LocalReply::host_unavailable()));
        };
        match &stream.fate {
            Fate::Allowed => return BodyEvent::Step(Step::Continue(Go { changes: None })),
            Fate::Undecided(Pending::ReadingBody { purpose, .. }) if end_of_stream || body_size > purpose.bound() => {}
            Fate::Answered | Fate::Undecided(_) => return BodyEvent::Step(Step::Hold),
        }
        // Complete: it is being decided (later chunks are held, not read twice).
        match std::mem::replace(&mut stream.fate, Fate::Undecided(Pending::Deciding)) {
            Fate::Undecided(Pending::ReadingBody { purpose, .. }) => BodyEvent::Complete(purpose),
            _ => BodyEvent::Step(Step::Hold),
        }
    }

    /// The trailers: they end a body being read (HTTP/2 and gRPC clients end with them).
    pub fn on_trailers(&mut self, context_id: u32) -> BodyEvent {
        self.on_body(context_id, 0, true)
    }

    /// Whether it is held for something on its way (not decided, not reading its body).
    pub fn waiting(&self, context_id: u32) -> Option<Waiting> {
        match self.streams.get(&context_id)?.fate {
            Fate::Undecided(Pending::Waiting(waiting)) => Some(waiting),
            _ => None,
        }
    }

    /// Whether it reads its body; its deadline, and whether the body is a form read for an API key.
    pub fn body_deadline(&self, context_id: u32) -> Option<(u64, bool)> {
        match &self.streams.get(&context_id)?.fate {
            Fate::Undecided(Pending::ReadingBody { deadline_ms, purpose }) => {
                Some((*deadline_ms, matches!(purpose, BodyPurpose::FormKey(_))))
            }
            _ => None,
        }
    }

    /// Streams held for something on its way.
    pub fn held(&self) -> impl Iterator<Item = (u32, &Waiting)> {
        self.streams.iter().filter_map(|(id, stream)| match &stream.fate {
            Fate::Undecided(Pending::Waiting(waiting)) => Some((*id, waiting)),
            _ => None,
        })
    }

    /// Streams reading their body, with their deadline.
    pub fn reading(&self) -> impl Iterator<Item = (u32, u64)> + '_ {
        self.streams.iter().filter_map(|(id, stream)| match &stream.fate {
            Fate::Undecided(Pending::ReadingBody { deadline_ms, .. }) => Some((*id, *deadline_ms)),
            _ => None,
        })
    }

    /// Whether any stream is held or reads its body (the host then ticks fast).
    pub fn any_held(&self) -> bool {
        self.streams
            .values()
            .any(|stream| matches!(stream.fate, Fate::Undecided(Pending::Waiting(_) | Pending::ReadingBody { .. })))
    }

    /// Since when it has been held, if it was.
    pub fn held_since(&self, context_id: u32) -> Option<u64> {
        self.streams.get(&context_id)?.held_since_ms
    }

    /// It holds a slot in flight under this limit key, and shows this quota.
    pub fn track(&mut self, context_id: u32, in_flight: Option<u64>, quota: Option<Quota>) {
        if let Some(stream) = self.streams.get_mut(&context_id) {
            stream.in_flight = in_flight;
            stream.quota = quota;
        }
    }

    /// The quota to show on its response, once.
    pub fn take_quota(&mut self, context_id: u32) -> Option<Quota> {
        self.streams.get_mut(&context_id)?.quota.take()
    }

    /// It ended, however: its slot in flight (to give back), and how long it was held
    /// if it was and was never decided.
    pub fn end(&mut self, context_id: u32) -> Ended {
        match self.streams.remove(&context_id) {
            Some(stream) => Ended {
                in_flight: stream.in_flight,
                abandoned_held_since: stream.held_since_ms.filter(|_| matches!(stream.fate, Fate::Undecided(_))),
            },
            None => Ended { in_flight: None, abandoned_held_since: None },
        }
    }

    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.streams.is_empty()
    }
}

/// What an ended stream leaves behind.
#[derive(Debug, PartialEq, Eq)]
pub struct Ended {
    /// The limit key of the slot in flight it held, to give back.
    pub in_flight: Option<u64>,
    /// It was held and ended undecided (the client went away), held since then.
    pub abandoned_held_since: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reason::Reason;

    fn waiting(since_ms: u64) -> Waiting {
        Waiting {
            awaited: Awaited::Keys { provider: ProviderId(0), refetch: false },
            since_ms,
            deadline_ms: since_ms + 2000,
            events_seen: 0,
        }
    }

    fn continues(step: &Step) -> bool {
        matches!(step, Step::Continue(_))
    }

    #[test]
    fn an_undecided_stream_holds_its_body_and_trailers() {
        let mut streams = Streams::default();
        streams.begin(1);
        assert_eq!(streams.wait(1, waiting(10)), Step::Hold);
        for (size, end) in [(0, false), (100, false), (1 << 20, true)] {
            assert_eq!(streams.on_body(1, size, end), BodyEvent::Step(Step::Hold));
        }
        assert_eq!(streams.on_trailers(1), BodyEvent::Step(Step::Hold));
        // Decided on a tick: then, and only then, it goes on.
        assert!(continues(&streams.allow(1, UpstreamChanges::default())));
        let BodyEvent::Step(step) = streams.on_body(1, 10, true) else { panic!() };
        assert_eq!(step, Step::Continue(Go { changes: None }), "later chunks carry no changes");
    }

    #[test]
    fn an_answered_stream_never_goes_on() {
        let mut streams = Streams::default();
        streams.begin(1);
        let reply = LocalReply::try_later(Reason::JwksUnavailable, 1);
        assert!(matches!(streams.answer(1, reply), Step::Answer(_)));
        assert_eq!(streams.on_body(1, 5, true), BodyEvent::Step(Step::Hold));
        assert_eq!(streams.on_trailers(1), BodyEvent::Step(Step::Hold));
        assert!(!continues(&streams.allow(1, UpstreamChanges::default())), "no second decision");
    }

    #[test]
    fn a_stream_never_begun_is_never_continued() {
        let mut streams = Streams::default();
        assert!(matches!(streams.on_body(9, 1, true), BodyEvent::Step(Step::Answer(_))));
        assert!(matches!(streams.on_trailers(9), BodyEvent::Step(Step::Answer(_))));
        assert!(matches!(streams.allow(9, UpstreamChanges::default()), Step::Answer(_)));
        assert!(matches!(streams.wait(9, waiting(0)), Step::Answer(_)));
    }

    #[test]
    fn a_body_read_is_complete_at_its_end_its_trailers_or_past_its_bound() {
        let purpose = BodyPurpose::TokenRequest(crate::token_endpoint::grant::Presented::default());
        for (size, end, trailers) in [(10, true, false), (8193, false, false), (10, false, true)] {
            let mut streams = Streams::default();
            streams.begin(1);
            assert_eq!(streams.read_body(1, purpose.clone(), 0, 10_000), Step::Hold);
            assert_eq!(streams.on_body(1, 10, false), BodyEvent::Step(Step::Hold));
            let event = if trailers { streams.on_trailers(1) } else { streams.on_body(1, size, end) };
            assert_eq!(event, BodyEvent::Complete(purpose.clone()));
            // Being decided: more chunks are held, not read twice.
            assert_eq!(streams.on_body(1, size, true), BodyEvent::Step(Step::Hold));
        }
    }

    #[test]
    fn an_ended_stream_gives_back_its_slot_and_says_if_it_was_abandoned() {
        let mut streams = Streams::default();
        streams.begin(1);
        streams.track(1, Some(42), None);
        assert_eq!(streams.end(1), Ended { in_flight: Some(42), abandoned_held_since: None });
        streams.begin(2);
        let _ = streams.wait(2, waiting(7));
        assert_eq!(streams.end(2), Ended { in_flight: None, abandoned_held_since: Some(7) });
        assert!(streams.is_empty());
        assert_eq!(streams.end(3), Ended { in_flight: None, abandoned_held_since: None });
    }
}
