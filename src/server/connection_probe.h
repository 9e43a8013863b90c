// Whether an HTTP client has gone away while its request is still running.
//
// cpp-httplib 0.11 (Debian 12) gives handlers no view of the socket and has
// no Request::is_connection_closed, but it does record the peer's address
// and port. ConnectionProbe finds the accepted socket with that peer once
// (a scan of this process's sockets) and then polls it: a peer that closed
// (FIN or RST) makes the engine cancel the request and free its slot, even
// while it is queued or prefilling and nothing has been written yet.
#pragma once

#include <string>

namespace duet::server {

class ConnectionProbe {
 public:
  ConnectionProbe(const std::string& remote_addr, int remote_port);
  // True once the peer has closed the connection. False when the socket was not found.
  bool closed() const;

 private:
  int fd_ = -1;
};

}  // namespace duet::server
