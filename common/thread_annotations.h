// Clang thread-safety annotations
// (https://clang.llvm.org/docs/ThreadSafetyAnalysis.html), as in leveldb's
// port/thread_annotations.h and abseil's absl/base/thread_annotations.h.
//
// With clang and -Wthread-safety the compiler checks them: a field marked
// GUARDED_BY(mu_) may only be touched while mu_ is held, a function marked
// REQUIRES(mu_) may only be called with mu_ held, and so on. On other
// compilers (gcc) every macro expands to nothing. tools/check_static.sh
// compiles every translation unit with clang -Wthread-safety
// -Werror=thread-safety. The capability types are common/mutex.h's Mutex and
// MutexLock.
#pragma once

#if defined(__clang__)
#define FRESHET_THREAD_ANNOTATION(x) __attribute__((x))
#else
#define FRESHET_THREAD_ANNOTATION(x)
#endif

// ---- On classes ------------------------------------------------------------
// The class is a lock (a "capability"); x names its kind in diagnostics.
#define CAPABILITY(x) FRESHET_THREAD_ANNOTATION(capability(x))
// The class is an RAII guard: its constructor acquires and its destructor
// releases a capability.
#define SCOPED_CAPABILITY FRESHET_THREAD_ANNOTATION(scoped_lockable)

// ---- On data members ---------------------------------------------------------
// Reading or writing the member requires holding x.
#define GUARDED_BY(x) FRESHET_THREAD_ANNOTATION(guarded_by(x))
// Dereferencing the (smart) pointer member requires holding x; the pointer
// itself is not guarded.
#define PT_GUARDED_BY(x) FRESHET_THREAD_ANNOTATION(pt_guarded_by(x))
// Lock-order declarations (checked only with -Wthread-safety-beta).
#define ACQUIRED_BEFORE(...) FRESHET_THREAD_ANNOTATION(acquired_before(__VA_ARGS__))
#define ACQUIRED_AFTER(...) FRESHET_THREAD_ANNOTATION(acquired_after(__VA_ARGS__))

// ---- On functions ------------------------------------------------------------
// The caller must hold the capabilities exclusively (shared) on entry; they
// are still held on exit.
#define REQUIRES(...) FRESHET_THREAD_ANNOTATION(requires_capability(__VA_ARGS__))
#define REQUIRES_SHARED(...) FRESHET_THREAD_ANNOTATION(requires_shared_capability(__VA_ARGS__))
#define EXCLUSIVE_LOCKS_REQUIRED(...) REQUIRES(__VA_ARGS__)
#define SHARED_LOCKS_REQUIRED(...) REQUIRES_SHARED(__VA_ARGS__)
// The function acquires (releases) the capabilities; with no argument on a
// member function of a capability class, the object itself.
#define ACQUIRE(...) FRESHET_THREAD_ANNOTATION(acquire_capability(__VA_ARGS__))
#define ACQUIRE_SHARED(...) FRESHET_THREAD_ANNOTATION(acquire_shared_capability(__VA_ARGS__))
#define RELEASE(...) FRESHET_THREAD_ANNOTATION(release_capability(__VA_ARGS__))
#define RELEASE_SHARED(...) FRESHET_THREAD_ANNOTATION(release_shared_capability(__VA_ARGS__))
// Acquires the capability iff the function returns the first argument.
#define TRY_ACQUIRE(...) FRESHET_THREAD_ANNOTATION(try_acquire_capability(__VA_ARGS__))
// The caller must NOT hold the capabilities (the function acquires them
// itself; calling it with them held would deadlock).
#define EXCLUDES(...) FRESHET_THREAD_ANNOTATION(locks_excluded(__VA_ARGS__))
#define LOCKS_EXCLUDED(...) EXCLUDES(__VA_ARGS__)
// Tells the analysis the capability is held from here on (a run-time
// assertion or a documented invariant).
#define ASSERT_CAPABILITY(x) FRESHET_THREAD_ANNOTATION(assert_capability(x))
// The function returns a reference to the capability x.
#define RETURN_CAPABILITY(x) FRESHET_THREAD_ANNOTATION(lock_returned(x))
// Turns the analysis off for one function. Use it only on the narrowest
// function whose locking the analysis cannot follow (locks reached through a
// container, locks handed between functions), and say why in a comment.
#define NO_THREAD_SAFETY_ANALYSIS FRESHET_THREAD_ANNOTATION(no_thread_safety_analysis)
