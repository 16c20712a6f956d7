// The shared library's own translation unit: everything it exports (flashattn_* of
// include/flashattn/c_api.h) comes from the whole flashattn archive linked into it.
#include "flashattn/c_api.h"
