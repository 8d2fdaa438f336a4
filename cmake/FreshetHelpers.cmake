# One helper per target kind, in the shape of abseil's absl_cc_library/absl_cc_test.
#
#   freshet_cc_library(NAME n HDRS ... SRCS ... DEPS ...)
#   freshet_cc_binary(NAME n SRCS ... DEPS ...)      -> build/bin/n
#   freshet_cc_test(NAME n SRCS ... DEPS ... [LABELS ...] [ARGS ...])  also calls add_test
include(CMakeParseArguments)

function(freshet_cc_library)
  cmake_parse_arguments(ARG "" "NAME" "HDRS;SRCS;DEPS" ${ARGN})
  if(ARG_SRCS)
    add_library(${ARG_NAME} STATIC ${ARG_SRCS} ${ARG_HDRS})
    target_compile_options(${ARG_NAME} PRIVATE
        $<$<COMPILE_LANGUAGE:CXX>:${FRESHET_WARNING_FLAGS}>
        $<$<COMPILE_LANGUAGE:CUDA>:${FRESHET_CUDA_WARNING_FLAGS}>)
    target_include_directories(${ARG_NAME} PUBLIC ${CMAKE_SOURCE_DIR} ${CMAKE_BINARY_DIR})
    target_link_libraries(${ARG_NAME} PUBLIC ${ARG_DEPS})
  else()
    add_library(${ARG_NAME} INTERFACE)
    target_include_directories(${ARG_NAME} INTERFACE ${CMAKE_SOURCE_DIR} ${CMAKE_BINARY_DIR})
    target_link_libraries(${ARG_NAME} INTERFACE ${ARG_DEPS})
  endif()
endfunction()

function(freshet_cc_binary)
  cmake_parse_arguments(ARG "" "NAME" "SRCS;DEPS" ${ARGN})
  add_executable(${ARG_NAME} ${ARG_SRCS})
  target_compile_options(${ARG_NAME} PRIVATE
      $<$<COMPILE_LANGUAGE:CXX>:${FRESHET_WARNING_FLAGS}>)
  target_link_libraries(${ARG_NAME} PRIVATE ${ARG_DEPS})
endfunction()

# freshet_cc_test(NAME n SRCS ... DEPS ... [LABELS ...] [ARGS ...] [TIMEOUT s])
#   LABELS: the ctest labels; default "unit" (an in-process test of one
#   binary). Tests that start mpirun or real jobs say so instead ("mpi e2e"),
#   so `ctest -L unit` stays fast and honest.
#   ARGS: arguments of the ctest entry (e.g. a --gtest_filter).
# Every test binary gets common/internal/gtest_main.cc: GTEST_SKIP() makes
# it exit 77 (SKIP_RETURN_CODE), so ctest shows "Skipped", not "Passed"; it
# runs in its own scratch TMPDIR, removed afterwards; glog goes to stderr.
function(freshet_cc_test)
  if(NOT FRESHET_BUILD_TESTS)
    return()
  endif()
  cmake_parse_arguments(ARG "" "NAME;TIMEOUT" "SRCS;DEPS;LABELS;ARGS" ${ARGN})
  add_executable(${ARG_NAME} ${ARG_SRCS})
  target_compile_options(${ARG_NAME} PRIVATE
      $<$<COMPILE_LANGUAGE:CXX>:${FRESHET_WARNING_FLAGS}>)
  target_link_libraries(${ARG_NAME} PRIVATE ${ARG_DEPS} freshet_gtest_main)
  add_test(NAME ${ARG_NAME} COMMAND ${ARG_NAME} ${ARG_ARGS})
  if(NOT ARG_TIMEOUT)
    set(ARG_TIMEOUT 300)
  endif()
  if(NOT ARG_LABELS)
    set(ARG_LABELS unit)
  endif()
  set_tests_properties(${ARG_NAME} PROPERTIES TIMEOUT ${ARG_TIMEOUT} LABELS "${ARG_LABELS}"
                       SKIP_RETURN_CODE 77)
endfunction()

# Sanitizer flags for every target (called once from the top-level
# CMakeLists.txt, before the subdirectories).
#   FRESHET_SANITIZE=address,undefined  -> -fsanitize=address,undefined
#   FRESHET_FUZZ=ON (clang)             -> -fsanitize=fuzzer-no-link,address,undefined
#     on everything (coverage feedback from the libraries); the *_fuzz
#     targets link with -fsanitize=fuzzer (freshet_cc_fuzz).
# UB is fatal (-fno-sanitize-recover) so a finding can never scroll by.
function(freshet_enable_sanitizers)
  set(_san "${FRESHET_SANITIZE}")
  if(FRESHET_FUZZ)
    if(NOT CMAKE_CXX_COMPILER_ID MATCHES "Clang")
      message(FATAL_ERROR "FRESHET_FUZZ needs clang (libFuzzer): configure with "
                          "-DCMAKE_CXX_COMPILER=clang++ (tools/fuzz.sh does)")
    endif()
    set(_san "fuzzer-no-link,address,undefined")
  endif()
  if(NOT _san)
    return()
  endif()
  set(_flags -fsanitize=${_san} -fno-omit-frame-pointer -fno-sanitize-recover=undefined)
  if(_san MATCHES "undefined" AND CMAKE_CXX_COMPILER_ID STREQUAL "GNU")
    # clang's -fsanitize=undefined checks float -> int conversions out of
    # range (NaN included); gcc's needs asking.
    list(APPEND _flags -fsanitize=float-cast-overflow)
    # gcc 12 with -fsanitize=address reports -Wmaybe-uninitialized inside
    # libstdc++'s <regex> and <functional> (false positives, gcc PR 105562
    # and relatives); the normal build keeps the warning.
    set(FRESHET_WARNING_FLAGS ${FRESHET_WARNING_FLAGS} -Wno-maybe-uninitialized PARENT_SCOPE)
  endif()
  add_compile_options(${_flags})
  string(REPLACE "fuzzer-no-link," "" _link_san "${_san}")
  add_link_options(-fsanitize=${_link_san})
  message(STATUS "freshet: sanitizers ${_san}")
endfunction()

# A libFuzzer target: freshet_cc_fuzz(NAME n SRCS ... DEPS ...) -> build/bin/n.
# Only with FRESHET_FUZZ (clang; the libraries are instrumented too).
function(freshet_cc_fuzz)
  cmake_parse_arguments(ARG "" "NAME" "SRCS;DEPS" ${ARGN})
  add_executable(${ARG_NAME} ${ARG_SRCS})
  target_compile_options(${ARG_NAME} PRIVATE
      $<$<COMPILE_LANGUAGE:CXX>:${FRESHET_WARNING_FLAGS}>)
  target_link_libraries(${ARG_NAME} PRIVATE ${ARG_DEPS})
  target_link_options(${ARG_NAME} PRIVATE -fsanitize=fuzzer)
endfunction()
