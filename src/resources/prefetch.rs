//! What `down` reads in its first round for the deletes on its longest path, so that they
//! start with their first change: the functions' configurations (discovery reads them anyway)
//! and the roles' policy lists. Each is used once, by the delete it is for. What changed since
//! is answered by AWS: a function's update conflict or not-found, a role's `DeleteConflict`
//! (the role's lists are then read again).
use std::collections::BTreeMap;
use std::sync::Mutex;

use aws_sdk_lambda::types::FunctionConfiguration;

use super::{Ctx, role};
use crate::graph::{Function, Step};
use crate::state::Resources;

/// Each role's name and policy lists, by step, as `down`'s first round read them.
pub(crate) type RoleLists = BTreeMap<Step, (String, role::Policies)>;

#[derive(Debug, Default)]
pub(crate) struct Prefetch {
    functions: Mutex<BTreeMap<Step, FunctionConfiguration>>,
    roles: Mutex<BTreeMap<Step, (String, role::Policies)>>,
}

impl Prefetch {
    pub(crate) fn new(functions: [Option<FunctionConfiguration>; 2], roles: RoleLists) -> Self {
        let functions = Function::BOTH
            .into_iter()
            .zip(functions)
            .filter_map(|(f, c)| Some((f.step(), c?)))
            .collect();
        Prefetch {
            functions: Mutex::new(functions),
            roles: Mutex::new(roles),
        }
    }

    /// The policy lists of every recorded role, read at once. A read that fails is left out:
    /// the delete reads again, and reports what fails then.
    pub(crate) async fn roles(ctx: &Ctx, res: &Resources) -> RoleLists {
        let read = |f: Function| async move {
            let name = res.get(&f.role())?.id.clone();
            let lists = role::policies(ctx, &name).await.ok()??;
            Some((f.role(), (name, lists)))
        };
        let (a, b) = tokio::join!(read(Function::Uploader), read(Function::Control));
        a.into_iter().chain(b).collect()
    }

    /// The function's configuration as read, once.
    pub(crate) fn function(&self, f: Function, name: &str) -> Option<FunctionConfiguration> {
        let mut all = self
            .functions
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        all.remove(&f.step())
            .filter(|c| c.function_name() == Some(name))
    }

    /// The role's policy lists as read, once.
    pub(crate) fn role(&self, step: Step, name: &str) -> Option<role::Policies> {
        let mut all = self
            .roles
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        all.remove(&step).filter(|(n, _)| n == name).map(|(_, p)| p)
    }
}
