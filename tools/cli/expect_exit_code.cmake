# Runs ${CLI} ${ARGS} and fails unless it exits with ${EXPECTED} (used by the CLI smoke tests).
execute_process(COMMAND ${CLI} ${ARGS} RESULT_VARIABLE code OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(NOT code EQUAL EXPECTED)
  message(FATAL_ERROR "expected exit code ${EXPECTED}, got ${code}\n${out}${err}")
endif()
message(STATUS "exit code ${code} as expected: ${err}")
