//! mock-master
