#include <sqlite3.h>

/// sqlite3_config is variadic, which Swift cannot call: this is its one use in moerec.
/// Turns off SQLite's memory-usage statistics (SQLITE_CONFIG_MEMSTATUS), which take a
/// global mutex around every allocation; nothing in moerec reads them. Takes effect only
/// before SQLite initialises (the first connection); later it returns SQLITE_MISUSE and
/// changes nothing.
static inline int moerec_sqlite3_disable_memstatus(void) {
    return sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
}
