//! Network governance: the one egress gate, the policy it enforces, the identity-dependency
//! inventory generated from the live configuration, and the checks change control runs.

pub mod addr;
pub mod checks;
pub mod decide;
pub mod gate;
pub mod inventory;
pub mod policy;

pub use decide::{Decision, Target, decide};
pub use gate::{
    EgressContext, EgressError, EgressGate, GateConfig, Observer, Resolver, StaticResolver,
    SystemResolver,
};
pub use policy::{Policy, PolicyError, Purpose, Rule, Scheme, Waiver};
