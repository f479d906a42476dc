// The fuzz binaries link libtorch through the library: the same rpath as the main binary.
include!("../build.rs");
