#include "worker/stream/socket_source.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>
#include <map>
#include <thread>

namespace freshet {
namespace {

using Clock = std::chrono::steady_clock;

int ConnectUnix(const std::string& path) {
  const int fd = socket(AF_UNIX, SOCK_STREAM, 0);
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  std::strcpy(a.sun_path, path.c_str());
  EXPECT_EQ(connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)), 0) << std::strerror(errno);
  return fd;
}

int ConnectTcp(int port) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  EXPECT_EQ(connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)), 0) << std::strerror(errno);
  return fd;
}

void WriteAll(int fd, const std::string& s) {
  size_t off = 0;
  while (off < s.size()) {
    const ssize_t n = write(fd, s.data() + off, s.size() - off);
    ASSERT_GT(n, 0);
    off += n;
  }
}

// A producer: header, `n` lines written in pieces that split lines, then
// (optionally) _END, then close.
void Produce(int fd, const std::string& name, int n, bool send_end) {
  std::string all = "#freshet-events v1\t" + name + "\n";
  for (int i = 0; i < n; ++i) all += name + " " + std::to_string(i) + "\n";
  for (size_t off = 0; off < all.size(); off += 777) {
    WriteAll(fd, all.substr(off, 777));
    if (off % 7 == 0) std::this_thread::sleep_for(std::chrono::microseconds(200));
  }
  if (send_end) WriteAll(fd, "_END\n");
  close(fd);
}

std::map<std::string, std::vector<std::string>> ReadAll(SocketSource* s, int* nones) {
  std::map<std::string, std::vector<std::string>> by_header;
  SourceLine line;
  const auto give_up = Clock::now() + std::chrono::seconds(30);
  while (Clock::now() < give_up) {
    auto r = s->Next(&line, Clock::now() + std::chrono::milliseconds(20));
    EXPECT_TRUE(r.ok()) << r.status();
    if (!r.ok() || *r == LineResult::kEnd) break;
    if (*r == LineResult::kNone) {
      ++*nones;
      continue;
    }
    by_header[*line.header].push_back(std::string(line.text));
  }
  return by_header;
}

void CheckLines(const std::map<std::string, std::vector<std::string>>& got,
                const std::map<std::string, int>& counts) {
  ASSERT_EQ(got.size(), counts.size());
  for (const auto& [name, n] : counts) {
    auto it = got.find("#freshet-events v1\t" + name);
    ASSERT_NE(it, got.end()) << name;
    ASSERT_EQ(it->second.size(), static_cast<size_t>(n)) << name;
    for (int i = 0; i < n; ++i) ASSERT_EQ(it->second[i], name + " " + std::to_string(i));
  }
}

TEST(SocketSourceTest, UnixSocketProducersEveryLineOnceUntilEnd) {
  SocketOptions o;
  o.unix_socket = ::testing::TempDir() + "freshet_sock_test_" + std::to_string(getpid());
  o.read_chunk = 512;
  auto s = SocketSource::Listen(o);
  ASSERT_TRUE(s.ok()) << s.status();
  // Nothing yet: kNone after the deadline, not before.
  SourceLine line;
  const auto t0 = Clock::now();
  auto r = (*s)->Next(&line, Clock::now() + std::chrono::milliseconds(50));
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(*r, LineResult::kNone);
  EXPECT_GE(Clock::now() - t0, std::chrono::milliseconds(50));

  std::thread a(Produce, ConnectUnix(o.unix_socket), "a", 5000, false);
  std::thread b(Produce, ConnectUnix(o.unix_socket), "b", 3000, true);
  int nones = 0;
  auto got = ReadAll(s->get(), &nones);
  a.join();
  b.join();
  // b's _END does not cut a short: the stream ends when both closed.
  CheckLines(got, {{"a", 5000}, {"b", 3000}});
}

TEST(SocketSourceTest, TcpAndAPartialLastLineAndShutdown) {
  SocketOptions o;
  o.tcp_port = 20000 + getpid() % 20000;
  auto s = SocketSource::Listen(o);
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ((*s)->address(), "tcp:127.0.0.1:" + std::to_string(o.tcp_port));
  // The same port twice: a clear error.
  auto again = SocketSource::Listen(o);
  ASSERT_FALSE(again.ok());
  EXPECT_NE(again.status().message().find("cannot bind"), std::string::npos);
  int fd = ConnectTcp(o.tcp_port);
  WriteAll(fd, "#freshet-events v1\tx\none\ntwo");  // "two" unterminated
  close(fd);
  fd = ConnectTcp(o.tcp_port);
  WriteAll(fd, "#freshet-events v1\ty\n_END\n");
  close(fd);
  int nones = 0;
  auto got = ReadAll(s->get(), &nones);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got["#freshet-events v1\tx"], (std::vector<std::string>{"one", "two"}));
  EXPECT_EQ((*s)->connections_accepted(), 2);
  s->reset();  // closes the listener: the port is free again
  EXPECT_TRUE(SocketSource::Listen(o).ok());
}

}  // namespace
}  // namespace freshet
