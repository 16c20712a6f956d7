# Fails unless README.md shows examples/basic_attention.cpp verbatim (the README's C++ example).
file(READ ${SOURCE_DIR}/README.md readme)
file(READ ${SOURCE_DIR}/examples/basic_attention.cpp example)
string(FIND "${readme}" "${example}" position)
if(position EQUAL -1)
  message(FATAL_ERROR "README.md no longer shows examples/basic_attention.cpp verbatim: "
                      "paste the file into the C++ API section again")
endif()
