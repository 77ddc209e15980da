//! The walk along one stream's stages: request callbacks in chain order,
//! response callbacks in reverse, stopping at a pause, and where a stopped
//! walk picks up again. No host calls (the glue in `filter` makes them), so
//! it is tested natively with fake stages.
// Natively only the tests use this module.
#![cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]

use filter_common::stream::{Direction, Recorded, Resume};
use proxy_wasm::types::Action;

/// What the walk needs of a stage: run one HTTP callback. The glue
/// implements it for the SDK's `Box<dyn HttpContext>`; the tests for fakes
/// (a native `dyn HttpContext` would not link: its default methods call the
/// host).
pub(crate) trait Stage {
    /// Runs `callback` on this stage.
    fn run(&mut self, callback: Callback) -> Action;
}

/// An HTTP callback, with its arguments, so a paused one can be finished
/// on the remaining stages later.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Callback {
    RequestHeaders(usize, bool),
    RequestBody(usize, bool),
    RequestTrailers(usize),
    ResponseHeaders(usize, bool),
    ResponseBody(usize, bool),
    ResponseTrailers(usize),
}

impl Callback {
    pub(crate) fn direction(self) -> Direction {
        match self {
            Self::RequestHeaders(..) | Self::RequestBody(..) | Self::RequestTrailers(..) => {
                Direction::Request
            }
            Self::ResponseHeaders(..) | Self::ResponseBody(..) | Self::ResponseTrailers(..) => {
                Direction::Response
            }
        }
    }
}

/// Where a stage stopped the walk.
#[derive(Debug, Clone, Copy)]
struct Paused {
    callback: Callback,
    /// Position along the walk (not the stage index: the response path
    /// runs backwards).
    position: usize,
}

/// One stream's stages.
pub(crate) struct Pipeline<S> {
    /// The stages' HTTP contexts, in chain order.
    stages: Vec<S>,
    paused: Option<Paused>,
    /// The stage whose local reply is the response: the response path
    /// starts there and runs back to the first stage.
    replier: Option<usize>,
    /// Callouts a stage's HTTP context dispatched: (token, stage index).
    callouts: Vec<(u32, usize)>,
}

impl<S: Stage> Pipeline<S> {
    pub(crate) fn new(stages: Vec<S>) -> Self {
        Self {
            stages,
            paused: None,
            replier: None,
            callouts: Vec::new(),
        }
    }

    /// The walk position a fresh `callback` starts at. A response while the
    /// request path is stopped is a local reply (or the host giving up on
    /// the pause), and the stage that stopped it sent it: as Envoy does with
    /// separate filters, the reply passes that stage and the ones before it,
    /// never the ones after. The request path is over then.
    pub(crate) fn start(&mut self, callback: Callback) -> usize {
        if callback.direction() == Direction::Request {
            return 0;
        }
        if let Some(paused) = self
            .paused
            .filter(|paused| paused.callback.direction() == Direction::Request)
        {
            self.paused = None;
            self.replier = Some(paused.position);
        }
        self.replier.map_or(0, |replier| {
            self.stages.len().saturating_sub(1).saturating_sub(replier)
        })
    }

    /// Runs `callback` on the stages from walk position `from` on. Stops at
    /// the first stage that pauses (a stage that replies locally pauses
    /// too), unless that stage resumed itself in the same callback, which a
    /// host counts as continuing. After each stage, `take` says what it
    /// asked for: its callouts are kept for it, resumes of anything else go
    /// to `others`.
    pub(crate) fn walk(
        &mut self,
        context_id: u32,
        callback: Callback,
        from: usize,
        others: &mut Vec<Resume>,
        take: &mut dyn FnMut() -> Recorded,
    ) -> Action {
        let n = self.stages.len();
        let direction = callback.direction();
        for position in from..n {
            let index = match direction {
                Direction::Request => position,
                Direction::Response => n - 1 - position,
            };
            let Some(stage) = self.stages.get_mut(index) else {
                break;
            };
            let action = stage.run(callback);
            let recorded = take();
            let mut resumed = false;
            if !recorded.is_empty() {
                self.keep_callouts(index, recorded.callouts);
                for resume in recorded.resumes {
                    if resume.context_id == context_id && resume.direction == direction {
                        resumed = true;
                    } else {
                        others.push(resume);
                    }
                }
            }
            if action == Action::Pause && !resumed {
                self.paused = Some(Paused { callback, position });
                return Action::Pause;
            }
        }
        self.paused = None;
        Action::Continue
    }

    /// The callback a walk stopped on `direction` was running and the
    /// position to go on from, if it stopped there.
    pub(crate) fn resume_point(&self, direction: Direction) -> Option<(Callback, usize)> {
        self.paused
            .filter(|paused| paused.callback.direction() == direction)
            .map(|paused| (paused.callback, paused.position + 1))
    }

    /// Runs `f` on every stage in chain order (`on_log`, `on_done`), keeping
    /// their callouts and collecting their resumes.
    pub(crate) fn each(
        &mut self,
        others: &mut Vec<Resume>,
        take: &mut dyn FnMut() -> Recorded,
        mut f: impl FnMut(&mut S),
    ) {
        for index in 0..self.stages.len() {
            if let Some(stage) = self.stages.get_mut(index) {
                f(stage);
            }
            let recorded = take();
            self.keep_callouts(index, recorded.callouts);
            others.extend(recorded.resumes);
        }
    }

    /// The stream is over: nothing is paused any more.
    pub(crate) fn finish(&mut self) {
        self.paused = None;
    }

    fn keep_callouts(&mut self, index: usize, tokens: Vec<u32>) {
        self.callouts
            .extend(tokens.into_iter().map(|token| (token, index)));
    }

    /// Hands a callout's answer to the stage that dispatched it and keeps
    /// or collects what that stage asked for. `false`: no stage owns the
    /// token.
    pub(crate) fn deliver(
        &mut self,
        token: u32,
        others: &mut Vec<Resume>,
        take: &mut dyn FnMut() -> Recorded,
        f: impl FnOnce(&mut S),
    ) -> bool {
        let Some(at) = self.callouts.iter().position(|(t, _)| *t == token) else {
            return false;
        };
        let (_, index) = self.callouts.swap_remove(at);
        if let Some(stage) = self.stages.get_mut(index) {
            f(stage);
        }
        let recorded = take();
        self.keep_callouts(index, recorded.callouts);
        others.extend(recorded.resumes);
        true
    }
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::rc::Rc;

    use super::*;

    /// What fake stages did and will ask for, shared with the test.
    #[derive(Default)]
    struct Script {
        calls: Vec<String>,
        /// (stage, callback name) → action; Continue when absent.
        pauses: Vec<(usize, &'static str)>,
        /// What the next `take` returns.
        pending: Recorded,
        /// (stage, callback name) → resume this stream in that callback.
        self_resumes: Vec<(usize, &'static str)>,
        /// (stage, callback name) → dispatch a callout with this token.
        callouts: Vec<(usize, &'static str, u32)>,
    }

    const ID: u32 = 7;

    struct Fake {
        index: usize,
        script: Rc<RefCell<Script>>,
    }

    impl Fake {
        fn act(&self, name: &'static str) -> Action {
            let mut s = self.script.borrow_mut();
            s.calls.push(format!("{}:{name}", self.index));
            if s.self_resumes.contains(&(self.index, name)) {
                s.pending.resumes.push(Resume {
                    context_id: ID,
                    direction: if name.starts_with("req") {
                        Direction::Request
                    } else {
                        Direction::Response
                    },
                });
            }
            let tokens: Vec<u32> = s
                .callouts
                .iter()
                .filter(|(i, n, _)| *i == self.index && *n == name)
                .map(|(_, _, t)| *t)
                .collect();
            s.pending.callouts.extend(tokens);
            if s.pauses.contains(&(self.index, name)) {
                Action::Pause
            } else {
                Action::Continue
            }
        }
    }

    impl Fake {
        fn answer(&mut self, token: u32) {
            self.script
                .borrow_mut()
                .calls
                .push(format!("{}:answer{token}", self.index));
        }

        fn log(&mut self) {
            self.act("log");
        }
    }

    impl Stage for Fake {
        /// Headers and request bodies are scripted; other callbacks
        /// continue without a trace.
        fn run(&mut self, callback: Callback) -> Action {
            match callback {
                Callback::RequestHeaders(..) => self.act("req_headers"),
                Callback::RequestBody(..) => self.act("req_body"),
                Callback::ResponseHeaders(..) => self.act("resp_headers"),
                _ => Action::Continue,
            }
        }
    }

    fn pipeline(n: usize) -> (Pipeline<Fake>, Rc<RefCell<Script>>) {
        let script = Rc::new(RefCell::new(Script::default()));
        let stages = (0..n)
            .map(|index| Fake {
                index,
                script: Rc::clone(&script),
            })
            .collect();
        (Pipeline::new(stages), script)
    }

    /// Runs `callback` from where a fresh one starts.
    fn run(p: &mut Pipeline<Fake>, script: &Rc<RefCell<Script>>, callback: Callback) -> Action {
        let mut others = Vec::new();
        let from = p.start(callback);
        let action = p.walk(ID, callback, from, &mut others, &mut || {
            std::mem::take(&mut script.borrow_mut().pending)
        });
        assert!(others.is_empty(), "{others:?}");
        action
    }

    fn calls(script: &Rc<RefCell<Script>>) -> Vec<String> {
        std::mem::take(&mut script.borrow_mut().calls)
    }

    const REQ: Callback = Callback::RequestHeaders(3, true);
    const RESP: Callback = Callback::ResponseHeaders(2, true);

    #[test]
    fn request_runs_in_chain_order_and_response_in_reverse() {
        let (mut p, script) = pipeline(3);
        assert_eq!(run(&mut p, &script, REQ), Action::Continue);
        assert_eq!(run(&mut p, &script, RESP), Action::Continue);
        assert_eq!(
            calls(&script),
            [
                "0:req_headers",
                "1:req_headers",
                "2:req_headers",
                "2:resp_headers",
                "1:resp_headers",
                "0:resp_headers"
            ]
        );
    }

    #[test]
    fn a_pause_stops_the_walk_and_the_resume_point_is_the_next_stage() {
        let (mut p, script) = pipeline(3);
        script.borrow_mut().pauses.push((1, "req_headers"));
        assert_eq!(run(&mut p, &script, REQ), Action::Pause);
        assert_eq!(calls(&script), ["0:req_headers", "1:req_headers"]);
        assert_eq!(p.resume_point(Direction::Response), None);
        let (callback, from) = p.resume_point(Direction::Request).unwrap();
        assert_eq!((callback, from), (REQ, 2));
        let mut others = Vec::new();
        let action = p.walk(ID, callback, from, &mut others, &mut Recorded::default);
        assert_eq!(action, Action::Continue);
        assert_eq!(calls(&script), ["2:req_headers"]);
        assert_eq!(p.resume_point(Direction::Request), None);
    }

    #[test]
    fn a_local_reply_runs_back_from_the_replier_only() {
        // Stage 1 of 4 replies (pauses); the response passes 1 then 0.
        let (mut p, script) = pipeline(4);
        script.borrow_mut().pauses.push((1, "req_headers"));
        assert_eq!(run(&mut p, &script, REQ), Action::Pause);
        calls(&script);
        assert_eq!(run(&mut p, &script, RESP), Action::Continue);
        assert_eq!(calls(&script), ["1:resp_headers", "0:resp_headers"]);
        // Later response callbacks of the stream start there too.
        assert_eq!(p.start(Callback::ResponseBody(5, true)), 2);
        // And the request path is over: no resume point is left.
        assert_eq!(p.resume_point(Direction::Request), None);
    }

    #[test]
    fn a_stage_that_pauses_and_resumes_itself_in_one_callback_continues() {
        let (mut p, script) = pipeline(2);
        {
            let mut s = script.borrow_mut();
            s.pauses.push((0, "req_headers"));
            s.self_resumes.push((0, "req_headers"));
        }
        assert_eq!(run(&mut p, &script, REQ), Action::Continue);
        assert_eq!(calls(&script), ["0:req_headers", "1:req_headers"]);
    }

    #[test]
    fn resumes_of_other_streams_are_handed_out() {
        let (mut p, script) = pipeline(2);
        script.borrow_mut().pending.resumes.push(Resume {
            context_id: 99,
            direction: Direction::Request,
        });
        let mut others = Vec::new();
        let take = &mut || std::mem::take(&mut script.borrow_mut().pending);
        p.walk(ID, REQ, 0, &mut others, take);
        assert_eq!(others.len(), 1);
        assert_eq!(others.first().map(|r| r.context_id), Some(99));
    }

    #[test]
    fn a_callout_answer_reaches_the_stage_that_dispatched_it() {
        let (mut p, script) = pipeline(3);
        script.borrow_mut().callouts.push((2, "req_headers", 41));
        script.borrow_mut().callouts.push((0, "log", 42));
        run(&mut p, &script, REQ);
        let mut others = Vec::new();
        let take = &mut || std::mem::take(&mut script.borrow_mut().pending);
        p.each(&mut others, take, Fake::log);
        calls(&script);
        for token in [41, 42] {
            let delivered = p.deliver(token, &mut others, take, |stage| stage.answer(token));
            assert!(delivered);
        }
        assert_eq!(calls(&script), ["2:answer41", "0:answer42"]);
        // Each answer is delivered once.
        assert!(!p.deliver(41, &mut others, take, |_| panic!("delivered twice")));
    }
}
