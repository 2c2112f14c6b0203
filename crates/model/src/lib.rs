//! The Provisioning Completed event model.
