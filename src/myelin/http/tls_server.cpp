// The HTTPS build of the HTTP server: server.cpp compiled a second time, with Connection over a
// TlsStream (handshake first, then the same request loop). Keeping it in its own translation
// unit leaves the plain-HTTP build's code exactly as it would be without TLS. Defines
// detail::make_tls_server (server_core.hpp); everything else stays in this unit's anonymous
// namespace.

#define MYELIN_HTTP_SERVER_TLS 1
#include "myelin/http/server.cpp"  // NOLINT(bugprone-suspicious-include): see above
