//! PROXY protocol header sent to us (by the NLB): pure parsing and trust policy.
