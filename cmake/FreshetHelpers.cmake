# One helper per target kind, in the shape of abseil's absl_cc_library/absl_cc_test.
#
#   freshet_cc_library(NAME n HDRS ... SRCS ... DEPS ...)
#   freshet_cc_binary(NAME n SRCS ... DEPS ...)      -> build/bin/n
#   freshet_cc_test(NAME n SRCS ... DEPS ... [LABELS ...])  also calls add_test
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

function(freshet_cc_test)
  if(NOT FRESHET_BUILD_TESTS)
    return()
  endif()
  cmake_parse_arguments(ARG "" "NAME;TIMEOUT" "SRCS;DEPS;LABELS" ${ARGN})
  add_executable(${ARG_NAME} ${ARG_SRCS})
  target_compile_options(${ARG_NAME} PRIVATE
      $<$<COMPILE_LANGUAGE:CXX>:${FRESHET_WARNING_FLAGS}>)
  target_link_libraries(${ARG_NAME} PRIVATE ${ARG_DEPS} GTest::gtest GTest::gtest_main)
  add_test(NAME ${ARG_NAME} COMMAND ${ARG_NAME})
  if(NOT ARG_TIMEOUT)
    set(ARG_TIMEOUT 300)
  endif()
  set_tests_properties(${ARG_NAME} PROPERTIES TIMEOUT ${ARG_TIMEOUT} LABELS "unit;${ARG_LABELS}")
endfunction()
