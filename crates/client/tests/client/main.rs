//! The client against in-process mock members: leader following, endpoint rotation,
//! deadlines, and which failures are retried.

mod mock;

mod batching;
mod deadline;
mod leader;
mod operations;
mod outcome;
mod sessions;
