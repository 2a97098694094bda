/*
 * listener.h - listening sockets with SO_REUSEPORT: one per worker, all on
 * the same address, so the kernel spreads new connections across workers
 * with no accept lock and no shared queue.
 *
 * libuv 1.44 has no reuse-port flag, so the socket is created with
 * uv_tcp_init_ex (which makes the fd at once) and the option is set on
 * uv_fileno before uv_tcp_bind.
 */
#ifndef HP_LISTENER_H
#define HP_LISTENER_H

#include <uv.h>

/* Initialize tcp on loop, bind it to host:port with SO_REUSEPORT and
 * listen; new connections go to hp_conn_accept with data as the worker.
 * On failure tcp may still be initialized: *opened says whether it must be
 * closed. */
int hp_listener_open(uv_loop_t *loop, uv_tcp_t *tcp, void *data, const char *host, int port,
                     int *opened);

/* Reserve host:port (port 0: the kernel picks one) with a bound, never
 * listening SO_REUSEPORT socket, so every worker can bind the same port
 * and no other program takes it in between. Returns the fd (close it once
 * the workers listen) and sets *port_out. Negative on failure. */
int hp_listener_reserve(const char *host, int port, int *port_out);

#endif
