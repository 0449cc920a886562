//! The continuous-batching scheduler: which tokens of which sequence go into
//! the next `llama_decode`. A pure state struct (no llama.cpp in here), so
//! every decision is unit tested; the model thread drives it
//! (see [`crate::LlamaCppGenerator`]).
//!
//! Each of the `parallel` slots is one llama.cpp sequence (`seq_id` = slot
//! index) of the shared context. A slot remembers the tokens whose keys and
//! values its sequence holds, also after its request ended, so the next
//! request that starts with the same tokens (a system prompt, the earlier
//! turns of a chat) skips them: that is the prefix cache.
//!
//! One step = one decode over every active sequence: each generating slot
//! contributes its one new token; slots still reading their prompt share
//! the rest of the token budget in chunks, so a long prompt never stalls the
//! streams already running for more than one chunk.
//!
//! Sharing across slots: a request whose prompt starts like the prompt
//! another slot is reading or has read (eight users of one app, one system
//! prompt) does not decode those tokens again. It waits until that slot
//! holds them, then the model thread copies them into its own sequence
//! ([`Scheduler::take_copies`]) and it reads only the rest. So N requests
//! that arrive together with a shared prefix pay for it once.
//!
//! LoRA adapters: every request runs in a *group* (0 = the base weights,
//! 1.. = an adapter). The KV a slot holds was computed under one group's
//! weights, so the prefix cache only matches within the same group, and
//! the model thread decodes each group of a plan separately with its
//! adapter set.

/// A token id, as llama.cpp numbers them.
pub type Token = i32;

/// What a slot is doing.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Phase {
    /// No request; the cached tokens stay for the prefix cache.
    Idle,
    /// Waiting for slot `leader` to hold `prompt[..upto]`, to copy it
    /// instead of decoding it (see [`Scheduler::take_copies`]).
    Wait {
        prompt: Vec<Token>,
        leader: usize,
        upto: usize,
    },
    /// Reading the prompt: `prompt[fed..]` has not been decoded yet.
    Prefill { prompt: Vec<Token>, fed: usize },
    /// Generating: `next` was sampled and is decoded in the next step.
    Generate { next: Token },
}

#[derive(Debug)]
struct Slot<J> {
    /// Tokens whose KV entries this slot's sequence holds, in position order.
    cached: Vec<Token>,
    phase: Phase,
    job: Option<J>,
    /// When the slot was last released, to reuse the stalest slot first.
    released_at: u64,
    /// The group (adapter) whose weights computed `cached`.
    group: usize,
}

/// One sequence's part of a step's batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub slot: usize,
    /// The slot's group: entries of different groups are decoded apart.
    pub group: usize,
    /// Position of the first token (the sequence's KV length before it).
    pub pos: usize,
    pub tokens: Vec<Token>,
    /// Whether the logits after the last token are needed (a token is
    /// sampled): true for generating slots and for the prompt's last chunk.
    pub logits: bool,
}

/// Where a new request went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Admitted {
    pub slot: usize,
    /// Leading prompt tokens whose KV the slot already holds (reused).
    pub cached: usize,
}

/// Copy `src`'s first `len` positions into `dst` (whose sequence is empty):
/// llama.cpp's `seq_cp` of the whole sequence, then `seq_rm` from `len` on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Copy {
    pub src: usize,
    pub dst: usize,
    pub len: usize,
}

/// Fewest shared tokens worth a copy: with one KV stream per slot, llama.cpp
/// copies a sequence's whole buffer, which costs about what decoding a few
/// tokens does.
pub const MIN_SHARED_COPY: usize = 16;

#[derive(Debug)]
pub struct Scheduler<J> {
    slots: Vec<Slot<J>>,
    /// Most prompt tokens one step decodes, over all slots.
    budget: usize,
    clock: u64,
}

impl<J> Scheduler<J> {
    /// `parallel` slots (at least 1); at most `budget` tokens per step
    /// (at least `parallel`, so every generating slot always fits).
    pub fn new(parallel: usize, budget: usize) -> Self {
        let parallel = parallel.max(1);
        Self {
            slots: (0..parallel)
                .map(|_| Slot {
                    cached: Vec::new(),
                    phase: Phase::Idle,
                    job: None,
                    released_at: 0,
                    group: 0,
                })
                .collect(),
            budget: budget.max(parallel),
            clock: 0,
        }
    }

    pub fn parallel(&self) -> usize {
        self.slots.len()
    }

    pub fn free_slots(&self) -> usize {
        self.slots.iter().filter(|s| s.job.is_none()).count()
    }

    pub fn active(&self) -> usize {
        self.slots.len() - self.free_slots()
    }

    pub fn is_idle(&self) -> bool {
        self.active() == 0
    }

    /// Puts a request with a non-empty `prompt` in the free slot whose cache
    /// shares the longest prefix with it (the stalest free slot when none
    /// does). The caller removes the slot's KV from position `cached` on.
    /// At least the prompt's last token is always decoded again, because its
    /// logits are what the first token is sampled from. Gives the job back
    /// when every slot is busy.
    pub fn admit(&mut self, prompt: Vec<Token>, job: J) -> Result<Admitted, J> {
        self.admit_in(0, prompt, job)
    }

    /// [`Scheduler::admit`] for a request of `group`: only a slot whose
    /// cache that group computed shares a prefix with it.
    pub fn admit_in(&mut self, group: usize, prompt: Vec<Token>, job: J) -> Result<Admitted, J> {
        if prompt.is_empty() {
            return Err(job);
        }
        let best = self
            .slots
            .iter()
            .enumerate()
            .filter(|(_, s)| s.job.is_none())
            .map(|(i, s)| {
                let shared = if s.group == group {
                    common_prefix(&s.cached, &prompt)
                } else {
                    0
                };
                (i, shared, s.released_at)
            })
            // Longest shared prefix; among equals, the stalest slot.
            .max_by(|a, b| a.1.cmp(&b.1).then(b.2.cmp(&a.2)));
        let Some((slot, shared, _)) = best else {
            return Err(job);
        };
        let cached = shared.min(prompt.len() - 1);
        // A busy slot of the same group that holds, or is reading, a longer
        // prefix of this prompt: wait for it and copy.
        let leader = self
            .slots
            .iter()
            .enumerate()
            .filter(|(i, s)| *i != slot && s.job.is_some() && s.group == group)
            .map(|(i, s)| {
                let ahead = match &s.phase {
                    Phase::Prefill { prompt: p, .. } => common_prefix(p, &prompt),
                    Phase::Wait { .. } | Phase::Idle => 0,
                    Phase::Generate { .. } => common_prefix(&s.cached, &prompt),
                };
                (i, ahead.min(prompt.len() - 1))
            })
            .max_by_key(|&(i, n)| (n, std::cmp::Reverse(i)));
        if let Some((leader, upto)) = leader.filter(|&(_, n)| n >= cached + MIN_SHARED_COPY) {
            let s = &mut self.slots[slot];
            s.cached.clear();
            s.group = group;
            s.phase = Phase::Wait {
                prompt,
                leader,
                upto,
            };
            s.job = Some(job);
            return Ok(Admitted { slot, cached: 0 });
        }
        let s = &mut self.slots[slot];
        s.cached.truncate(cached);
        s.group = group;
        s.phase = Phase::Prefill {
            prompt,
            fed: cached,
        };
        s.job = Some(job);
        Ok(Admitted { slot, cached })
    }

    /// Waiting slots whose leader now holds the shared prefix: each becomes
    /// a prompt reader from `upto` on, and the caller copies the KV before
    /// the next decode. A waiter whose leader no longer holds nor reads the
    /// prefix (it failed, or was cancelled and reused) reads its whole
    /// prompt itself.
    pub fn take_copies(&mut self) -> Vec<Copy> {
        let mut copies = Vec::new();
        for dst in 0..self.slots.len() {
            let (leader, upto, held, coming) = match &self.slots[dst].phase {
                Phase::Wait {
                    prompt,
                    leader,
                    upto,
                } => {
                    let l = &self.slots[*leader];
                    let same = l.group == self.slots[dst].group;
                    let held = same && common_prefix(&l.cached, prompt) >= *upto;
                    let coming = same
                        && l.job.is_some()
                        && matches!(&l.phase, Phase::Prefill { prompt: p, .. }
                            if common_prefix(p, prompt) >= *upto);
                    (*leader, *upto, held, coming)
                }
                _ => continue,
            };
            if !held && coming {
                continue;
            }
            let s = &mut self.slots[dst];
            let Phase::Wait { prompt, .. } = std::mem::replace(&mut s.phase, Phase::Idle) else {
                continue;
            };
            if held {
                s.cached = prompt[..upto].to_vec();
                s.phase = Phase::Prefill { prompt, fed: upto };
                copies.push(Copy {
                    src: leader,
                    dst,
                    len: upto,
                });
            } else {
                s.phase = Phase::Prefill { prompt, fed: 0 };
            }
        }
        copies
    }

    /// The next step's batch: one token per generating slot, then prompt
    /// chunks in slot order until the budget is spent. Empty when idle.
    pub fn plan(&self) -> Vec<Entry> {
        let mut entries = Vec::new();
        let mut left = self.budget;
        for (i, s) in self.slots.iter().enumerate() {
            if let Phase::Generate { next } = s.phase {
                entries.push(Entry {
                    slot: i,
                    group: s.group,
                    pos: s.cached.len(),
                    tokens: vec![next],
                    logits: true,
                });
                left -= 1;
            }
        }
        for (i, s) in self.slots.iter().enumerate() {
            if left == 0 {
                break;
            }
            if let Phase::Prefill { prompt, fed } = &s.phase {
                let n = (prompt.len() - fed).min(left);
                left -= n;
                entries.push(Entry {
                    slot: i,
                    group: s.group,
                    pos: s.cached.len(),
                    tokens: prompt[*fed..fed + n].to_vec(),
                    logits: fed + n == prompt.len(),
                });
            }
        }
        entries
    }

    /// Records that `entry` was decoded: its tokens are now cached.
    pub fn decoded(&mut self, entry: &Entry) {
        let s = &mut self.slots[entry.slot];
        s.cached.extend_from_slice(&entry.tokens);
        if let Phase::Prefill { prompt, fed } = &mut s.phase {
            *fed += entry.tokens.len();
            if *fed == prompt.len() {
                // Waits for `sampled` to give it its first token.
                s.phase = Phase::Generate { next: -1 };
            }
        }
    }

    /// The token sampled for `slot`, decoded in the next step.
    pub fn sampled(&mut self, slot: usize, token: Token) {
        self.slots[slot].phase = Phase::Generate { next: token };
    }

    /// Tokens in `slot`'s sequence so far (prompt and generated).
    pub fn len(&self, slot: usize) -> usize {
        self.slots[slot].cached.len()
    }

    pub fn job_mut(&mut self, slot: usize) -> Option<&mut J> {
        self.slots[slot].job.as_mut()
    }

    /// Slots with a request, in order.
    pub fn busy(&self) -> Vec<usize> {
        (0..self.slots.len())
            .filter(|&i| self.slots[i].job.is_some())
            .collect()
    }

    /// Ends `slot`'s request. Its cached tokens stay for the next prompt
    /// that shares them; `keep_cache = false` forgets them (the caller
    /// clears the sequence, e.g. after a failed decode).
    pub fn release(&mut self, slot: usize, keep_cache: bool) -> Option<J> {
        self.clock += 1;
        let s = &mut self.slots[slot];
        if !keep_cache {
            s.cached.clear();
        }
        s.phase = Phase::Idle;
        s.released_at = self.clock;
        s.job.take()
    }
}

fn common_prefix(a: &[Token], b: &[Token]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs one step as the model thread would, sampling `token` for every
    /// slot that needs logits.
    fn step(s: &mut Scheduler<&'static str>, token: Token) -> Vec<Entry> {
        let _ = s.take_copies();
        let plan = s.plan();
        for e in &plan {
            s.decoded(e);
            if e.logits {
                s.sampled(e.slot, token);
            }
        }
        plan
    }

    #[test]
    fn admits_into_free_slots_then_refuses() {
        let mut s = Scheduler::new(2, 64);
        assert_eq!(s.free_slots(), 2);
        let a = s.admit(vec![1, 2, 3], "a").expect("slot");
        let b = s.admit(vec![4, 5], "b").expect("slot");
        assert_ne!(a.slot, b.slot);
        assert_eq!(s.admit(vec![6], "c"), Err("c"));
        assert_eq!(s.admit(vec![], "d"), Err("d"));
        assert_eq!(s.free_slots(), 0);
        assert_eq!(s.release(a.slot, true), Some("a"));
        assert_eq!(s.free_slots(), 1);
        assert!(s.admit(vec![7], "c").is_ok());
    }

    fn range(a: Token, b: Token) -> Vec<Token> {
        (a..b).collect()
    }

    #[test]
    fn a_shared_prefix_is_read_once_then_copied() {
        let mut s = Scheduler::new(3, 64);
        let a = s.admit(range(0, 40), "a").expect("slot");
        // Same first 38 tokens, own ending: waits for `a` instead of reading.
        let mut p = range(0, 38);
        p.extend([77, 78]);
        let b = s.admit(p, "b").expect("slot");
        assert_eq!(b.cached, 0);
        assert!(s.take_copies().is_empty(), "nothing to copy yet");
        let plan = s.plan();
        assert_eq!(plan.len(), 1, "only the leader reads: {plan:?}");
        assert_eq!(plan[0].slot, a.slot);
        for e in &plan {
            s.decoded(e);
            s.sampled(e.slot, 5);
        }
        assert_eq!(
            s.take_copies(),
            vec![Copy {
                src: a.slot,
                dst: b.slot,
                len: 38
            }]
        );
        assert_eq!(s.len(b.slot), 38);
        let plan = s.plan();
        let eb = plan.iter().find(|e| e.slot == b.slot).expect("b reads");
        assert_eq!(
            (eb.pos, eb.tokens.clone(), eb.logits),
            (38, vec![77, 78], true)
        );
        assert!(s.take_copies().is_empty(), "copied once");
    }

    #[test]
    fn a_waiter_whose_leader_is_gone_reads_its_whole_prompt() {
        let mut s = Scheduler::new(2, 64);
        let a = s.admit(range(0, 40), "a").expect("slot");
        let b = s.admit(range(0, 39), "b").expect("slot");
        assert_eq!(s.release(a.slot, false), Some("a"));
        assert!(s.take_copies().is_empty());
        let plan = s.plan();
        assert_eq!(plan.len(), 1);
        assert_eq!(
            (plan[0].slot, plan[0].pos, plan[0].tokens.len()),
            (b.slot, 0, 39)
        );
    }

    #[test]
    fn short_prefixes_and_other_groups_are_read_not_copied() {
        let mut s = Scheduler::new(3, 256);
        s.admit(range(0, 40), "a").expect("slot");
        let mut short = range(0, MIN_SHARED_COPY as Token - 1);
        short.push(500);
        s.admit(short, "b").expect("slot");
        s.admit_in(1, range(0, 40), "c").expect("slot");
        assert!(s.take_copies().is_empty());
        assert_eq!(s.plan().len(), 3, "all three read at once");
    }

    #[test]
    fn a_generating_slot_shares_what_it_holds() {
        let mut s = Scheduler::new(2, 64);
        let a = s.admit(range(0, 30), "a").expect("slot");
        step(&mut s, 9);
        // `a` holds 0..30 and generates; a new prompt 0..30 + more copies 30.
        let mut p = range(0, 30);
        p.extend([9, 100, 101]);
        let b = s.admit(p, "b").expect("slot");
        assert_eq!(
            s.take_copies(),
            vec![Copy {
                src: a.slot,
                dst: b.slot,
                len: 30
            }]
        );
    }

    #[test]
    fn one_step_covers_every_sequence() {
        let mut s = Scheduler::new(3, 64);
        let a = s.admit(vec![1, 2, 3], "a").expect("slot");
        let plan = step(&mut s, 9);
        assert_eq!(
            plan,
            vec![Entry {
                slot: a.slot,
                group: 0,
                pos: 0,
                tokens: vec![1, 2, 3],
                logits: true
            }]
        );
        // A second request joins while the first generates: both are in
        // the same step, the generating token first.
        let b = s.admit(vec![4, 5], "b").expect("slot");
        let plan = step(&mut s, 8);
        assert_eq!(plan.len(), 2);
        assert_eq!(
            (plan[0].slot, plan[0].pos, &plan[0].tokens),
            (a.slot, 3, &vec![9])
        );
        assert_eq!(
            (plan[1].slot, plan[1].pos, &plan[1].tokens),
            (b.slot, 0, &vec![4, 5])
        );
        let plan = step(&mut s, 7);
        assert_eq!(plan.len(), 2);
        assert!(plan.iter().all(|e| e.tokens.len() == 1 && e.logits));
        assert_eq!(s.len(a.slot), 5);
        assert_eq!(s.len(b.slot), 3);
    }

    #[test]
    fn long_prompts_are_chunked_between_decode_steps() {
        let mut s = Scheduler::new(2, 4);
        let a = s.admit(vec![1], "a").expect("slot");
        step(&mut s, 5);
        let b = s.admit((10..20).collect(), "b").expect("slot");
        // Budget 4: a's one token plus three prompt tokens of b per step.
        let mut chunks = Vec::new();
        loop {
            let plan = step(&mut s, 6);
            assert!(plan.iter().map(|e| e.tokens.len()).sum::<usize>() <= 4);
            assert!(plan.iter().any(|e| e.slot == a.slot), "a keeps generating");
            let e = plan.iter().find(|e| e.slot == b.slot).expect("b's chunk");
            chunks.push((e.pos, e.tokens.len(), e.logits));
            if e.logits {
                break;
            }
        }
        assert_eq!(
            chunks,
            vec![(0, 3, false), (3, 3, false), (6, 3, false), (9, 1, true)]
        );
    }

    #[test]
    fn prefix_cache_reuses_the_slot_with_the_longest_shared_prefix() {
        let mut s = Scheduler::new(2, 64);
        let a = s.admit(vec![1, 2, 3, 4], "a").expect("slot");
        let b = s.admit(vec![7, 8], "b").expect("slot");
        step(&mut s, 5);
        step(&mut s, 6);
        s.release(a.slot, true);
        s.release(b.slot, true);
        // The second turn of a's chat: its cache [1 2 3 4 5] is a prefix.
        let c = s.admit(vec![1, 2, 3, 4, 5, 6, 9], "c").expect("slot");
        assert_eq!(
            c,
            Admitted {
                slot: a.slot,
                cached: 5
            }
        );
        let plan = s.plan();
        assert_eq!(plan[0].pos, 5);
        assert_eq!(plan[0].tokens, vec![6, 9]);
        // The identical prompt again still decodes its last token.
        s.release(c.slot, true);
        let d = s.admit(vec![1, 2, 3], "d").expect("slot");
        assert_eq!(
            d,
            Admitted {
                slot: a.slot,
                cached: 2
            }
        );
        // Forgetting the cache: nothing is reused.
        s.release(d.slot, false);
        let e = s.admit(vec![7, 8, 1], "e").expect("slot");
        assert_eq!(
            e,
            Admitted {
                slot: b.slot,
                cached: 2
            }
        );
        let f = s.admit(vec![1, 2], "f").expect("slot");
        assert_eq!(
            f,
            Admitted {
                slot: a.slot,
                cached: 0
            }
        );
    }

    #[test]
    fn the_prefix_cache_never_crosses_adapters() {
        let mut s = Scheduler::new(2, 64);
        let a = s.admit_in(1, vec![1, 2, 3, 4], "a").expect("slot");
        step(&mut s, 5);
        s.release(a.slot, true);
        // Same tokens under the base weights (group 0): a's KV was computed
        // with adapter 1, so nothing is reused, and the other slot is taken
        // as it shares nothing either but a's cache stays for group 1.
        let b = s.admit_in(0, vec![1, 2, 3, 4, 9], "b").expect("slot");
        assert_eq!(b.cached, 0);
        assert_ne!(b.slot, a.slot, "the stalest slot, not a's");
        // One step decoded a's prompt (its sampled token never was).
        let c = s.admit_in(1, vec![1, 2, 3, 4, 5, 6], "c").expect("slot");
        assert_eq!(
            c,
            Admitted {
                slot: a.slot,
                cached: 4
            }
        );
        let plan = step(&mut s, 7);
        let groups: Vec<(usize, usize)> = plan.iter().map(|e| (e.slot, e.group)).collect();
        assert!(groups.contains(&(b.slot, 0)) && groups.contains(&(c.slot, 1)));
    }

    #[test]
    fn released_slots_leave_the_next_plan() {
        let mut s = Scheduler::new(2, 64);
        let a = s.admit(vec![1], "a").expect("slot");
        let b = s.admit(vec![2], "b").expect("slot");
        step(&mut s, 3);
        let mut both = vec![a.slot, b.slot];
        both.sort_unstable();
        assert_eq!(s.busy(), both);
        assert_eq!(s.release(a.slot, true), Some("a"));
        let plan = s.plan();
        assert_eq!(plan.len(), 1);
        assert_eq!(plan[0].slot, b.slot);
        s.release(b.slot, true);
        assert!(s.plan().is_empty());
        assert!(s.is_idle());
    }
}
