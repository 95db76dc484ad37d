#pragma once
// The client side of one fuzzed session over a socketpair: hands the server end to
// `adopt`, sends `data` while reading whatever comes back, half-closes, then reads until
// the server closes. A server that stops answering for 5 s traps (it wedged).
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>

template <class Adopt>
void run_socket_session(const uint8_t* data, size_t size, Adopt&& adopt) {
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) return;
  adopt(sv[1]);
  size_t off = 0;
  static uint8_t sink[1 << 20];
  while (off < size) {
    pollfd p[1] = {{sv[0], POLLOUT | POLLIN, 0}};
    if (poll(p, 1, 2000) <= 0) break;
    if (p[0].revents & POLLIN) {
      if (read(sv[0], sink, sizeof(sink)) <= 0) break;
    }
    if (p[0].revents & POLLOUT) {
      ssize_t n = send(sv[0], data + off, size - off, MSG_NOSIGNAL | MSG_DONTWAIT);
      if (n <= 0) break;
      off += static_cast<size_t>(n);
    }
    if (p[0].revents & (POLLHUP | POLLERR)) break;
  }
  shutdown(sv[0], SHUT_WR);
  for (;;) {
    pollfd p{sv[0], POLLIN, 0};
    if (poll(&p, 1, 5000) <= 0) __builtin_trap();
    if (read(sv[0], sink, sizeof(sink)) <= 0) break;
  }
  close(sv[0]);
}
