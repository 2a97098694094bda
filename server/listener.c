/*
 * listener.c - SO_REUSEPORT listening sockets (see listener.h).
 */
#include "listener.h"

#include "conn.h"

#include <errno.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

/* The kernel clamps this to net.core.somaxconn (4096 on current kernels):
 * a burst of 5,000 connects from a load generator fits. */
#define BACKLOG 4096

static int parse_addr(const char *host, int port, struct sockaddr_storage *ss)
{
    if (uv_ip4_addr(host, port, (struct sockaddr_in *)ss) == 0) return 0;
    return uv_ip6_addr(host, port, (struct sockaddr_in6 *)ss);
}

int hp_listener_open(uv_loop_t *loop, uv_tcp_t *tcp, void *data, const char *host, int port,
                     int *opened)
{
    *opened = 0;
    struct sockaddr_storage ss;
    int rc = parse_addr(host, port, &ss);
    if (rc) return rc;
    /* init_ex makes the socket now, so the option can be set before bind. */
    rc = uv_tcp_init_ex(loop, tcp, ss.ss_family);
    if (rc) return rc;
    *opened = 1;
    tcp->data = data;
    uv_os_fd_t fd;
    rc = uv_fileno((uv_handle_t *)tcp, &fd);
    if (rc) return rc;
    int one = 1;
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) != 0) return -errno;
    rc = uv_tcp_bind(tcp, (struct sockaddr *)&ss, 0);
    if (rc) return rc;
    return uv_listen((uv_stream_t *)tcp, BACKLOG, hp_conn_accept);
}

int hp_listener_reserve(const char *host, int port, int *port_out)
{
    struct sockaddr_storage ss;
    int rc = parse_addr(host, port, &ss);
    if (rc) return rc;
    int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -errno;
    int one = 1;
    socklen_t len =
        ss.ss_family == AF_INET ? sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6);
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) != 0 ||
        bind(fd, (struct sockaddr *)&ss, len) != 0 ||
        getsockname(fd, (struct sockaddr *)&ss, &len) != 0) {
        rc = -errno;
        close(fd);
        return rc;
    }
    *port_out = ntohs(ss.ss_family == AF_INET ? ((struct sockaddr_in *)&ss)->sin_port
                                              : ((struct sockaddr_in6 *)&ss)->sin6_port);
    return fd;
}
