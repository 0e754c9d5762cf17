#pragma once

// libpq, loaded with dlopen when a PostgreSQL database is first opened instead of linked into
// the binary: a server on SQLite (the default) then never maps libpq and the twenty libraries
// it pulls in (GnuTLS, p11-kit, Kerberos, LDAP, SASL, nettle...), about 3.4 MiB of an idle
// server's 16 MiB RSS, and runs none of their start-up code.
//
// Only pg_connection.cpp calls libpq, through the table below.

#include <libpq-fe.h>

#include "myelin/core/error.hpp"

namespace myelin::storage::pg {

// Every libpq function Myelin calls, named as in libpq-fe.h.
#define MYELIN_LIBPQ_FUNCTIONS(X) \
    X(PQbackendPID)               \
    X(PQclear)                    \
    X(PQcmdTuples)                \
    X(PQconnectdbParams)          \
    X(PQconsumeInput)             \
    X(PQerrorMessage)             \
    X(PQexec)                     \
    X(PQexecPrepared)             \
    X(PQfinish)                   \
    X(PQfreemem)                  \
    X(PQgetisnull)                \
    X(PQgetlength)                \
    X(PQgetResult)                \
    X(PQgetvalue)                 \
    X(PQnotifies)                 \
    X(PQntuples)                  \
    X(PQprepare)                  \
    X(PQputCopyData)              \
    X(PQputCopyEnd)               \
    X(PQresultErrorField)         \
    X(PQresultStatus)             \
    X(PQsendQueryPrepared)        \
    X(PQsetNoticeProcessor)       \
    X(PQsetSingleRowMode)         \
    X(PQsocket)                   \
    X(PQstatus)

struct LibPq {
#define MYELIN_LIBPQ_MEMBER(name) decltype(&::name) name = nullptr;
    MYELIN_LIBPQ_FUNCTIONS(MYELIN_LIBPQ_MEMBER)
#undef MYELIN_LIBPQ_MEMBER
};

// Loads libpq.so.5 and resolves every function, once per process (later calls return the same
// table; a failed load is tried again by the next call). Error (503, retry in 5 s) naming the
// Debian package when the library or a function is missing. Thread-safe.
Result<const LibPq*> load_libpq();

// The table of a successful load_libpq(). Only for code that runs on a connection that
// load_libpq() made possible (every pg::Connection is opened after it).
const LibPq& libpq();

}  // namespace myelin::storage::pg
