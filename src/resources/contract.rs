//! The contract every resource kind keeps.
//!
//! A kind is one module of `resources/` with one `impl Contract`; adding a kind is that module
//! and one line in the registry, `resources::contract()`. Every verb has the same signature for
//! every kind, so the dispatch in `resources/mod.rs` is written once, not once per verb.
use std::future::Future;
use std::pin::Pin;

use anyhow::{Result, bail};

use super::read::Ec2Read;
use super::{Ctx, Difference, Live, Made, Teardown};
use crate::run::Action;
use crate::state::{Resource, Resources};

/// What `down` says of a borrowed resource it leaves as it found it.
pub(crate) const LEFT_AS_IT_WAS: &str = "borrowed: left as it was, not privbucket's to delete";

/// A verb's answer, boxed so that the registry can hand out `&dyn Contract`.
pub(crate) type Answer<'a, T> = Pin<Box<dyn Future<Output = Result<T>> + Send + 'a>>;

/// What `up`, `status`, `plan` and `down` ask of a resource kind. `res` holds the resources
/// recorded (or found) so far; `known` the one this step records.
pub(crate) trait Contract: Sync {
    /// Looks for the resource by tag or deterministic name: an interrupted run may have made
    /// it. Only what is the stack's is found; anything else by that name is an error.
    fn find<'a>(&'a self, ctx: &'a Ctx, res: &'a Resources) -> Answer<'a, Option<Resource>>;

    /// Makes it. What a new resource still lacks comes back in [`Made`], for [`Self::fix`].
    fn create<'a>(&'a self, ctx: &'a Ctx, res: &'a Resources) -> Answer<'a, Made>;

    /// Whether it is there, and how it differs from what it should be: from `read` when the
    /// command has read EC2 already, else by a call of its own.
    fn observe<'a>(
        &'a self,
        ctx: &'a Ctx,
        res: &'a Resources,
        known: &'a Resource,
        read: Option<&'a Ec2Read>,
    ) -> Answer<'a, Live>;

    /// Puts right what differs in place (the refusal of what cannot be is `mod.rs`'s).
    fn fix<'a>(
        &'a self,
        ctx: &'a Ctx,
        res: &'a Resources,
        known: &'a Resource,
        diffs: &'a [Difference],
    ) -> Answer<'a, ()>;

    /// Deletes it; "already gone" counts as done. `down` says what it chose and read first.
    fn delete<'a>(
        &'a self,
        ctx: &'a Ctx,
        known: &'a Resource,
        down: &'a Teardown,
    ) -> Answer<'a, Action>;

    /// Whether what a new one lacks can be put right while the steps that need it go on:
    /// nothing they do reads it.
    fn finished_beside(&self) -> bool {
        false
    }

    /// What to record before the create call, when a crash between the create and a later
    /// call would leave what was made unprovable as the stack's.
    fn intent(&self, _ctx: &Ctx) -> Option<Resource> {
        None
    }

    /// Whether one found by `find` is adopted and repaired rather than made.
    fn adopts(&self) -> bool {
        true
    }

    /// Whether a difference of a *borrowed* resource is privbucket's own to put right: only
    /// what privbucket itself added to it (a route table it put on a borrowed endpoint).
    /// Everything else about a borrowed resource is the user's, and `fix` refuses it.
    fn fixes_on_borrowed(&self, _known: &Resource, _diff: &Difference) -> bool {
        false
    }

    /// `down` for a borrowed resource: never deleted; what privbucket added to it is taken
    /// off again.
    fn give_back<'a>(
        &'a self,
        _ctx: &'a Ctx,
        _known: &'a Resource,
        _down: &'a Teardown,
    ) -> Answer<'a, Action> {
        done(Action::Left(LEFT_AS_IT_WAS.to_string()))
    }

    /// Deletes one that `up` replaces ([`Difference::replaces`]); most kinds never are.
    fn replace<'a>(&'a self, _ctx: &'a Ctx, known: &'a Resource) -> Answer<'a, ()> {
        Box::pin(async move { bail!("internal error: {} is never replaced", known.id) })
    }
}

/// An answer with nothing to do.
pub(crate) fn done<'a, T: Send + 'a>(value: T) -> Answer<'a, T> {
    Box::pin(async move { Ok(value) })
}
