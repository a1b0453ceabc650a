/*
 * lwip_echo: an lwIP 2.1 raw-API TCP echo server (RFC 862) on an existing Linux TAP device, the
 * lwIP peer of the impaired-link benchmark (issue 9). Built against Debian's liblwip-dev by
 * benches/lwip/build.sh; benches/lwip/README.md describes it.
 *
 *   lwip_echo --tap NAME --ip A.B.C.D --prefix N --gw A.B.C.E --port P [--input locked|mbox]
 *
 * Debian builds lwIP with NO_SYS=0 and LWIP_TCPIP_CORE_LOCKING=1: lwIP runs in its own tcpip
 * thread (timers, input processing, all raw-API callbacks), and any other thread must hold the
 * core lock to call the raw API. The main thread here owns the TAP: it polls the TAP and a
 * signalfd, copies each frame into a pbuf and hands it to lwIP. lwIP's own tapif is not used:
 * it overflows a heap buffer on full-size frames (see tap_read_batch).
 */
#define _GNU_SOURCE

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <net/if.h>
#include <linux/if_tun.h>

#include "lwip/opt.h"
#include "lwip/init.h"
#include "lwip/ip4_addr.h"
#include "lwip/netif.h"
#include "lwip/pbuf.h"
#include "lwip/sys.h"
#include "lwip/tcp.h"
#include "lwip/tcpip.h"
#include "netif/ethernet.h"
#include "lwip/etharp.h"
#if LWIP_IPV6
#include "lwip/ethip6.h"
#endif

/* An Ethernet frame without FCS at MTU 1500 is 1514 bytes; room for a VLAN tag and slack. */
#define FRAME_MAX 1536
/* Ethernet's minimum frame without FCS; shorter frames are zero-padded to it. */
#define ETH_MIN_FRAME 60
/* Frames read per wake-up before polling again, so the signalfd is never starved. */
#define READ_BATCH 64
/* A full tcpip mailbox is retried this often, this far apart (at most 1 s per frame: the
 * tcpip thread can be descheduled for tens of ms on a busy machine). */
#define MBOX_FULL_RETRIES 10000
#define MBOX_FULL_WAIT_US 100

/* Locally administered, fixed, so captures and ARP tables are stable from run to run. */
static const u8_t tap_mac[ETH_HWADDR_LEN] = {0x02, 0x00, 0x00, 0x6c, 0x77, 0x01};

static int tap_fd = -1;
static struct netif tap_netif;

/* Counters. The tcpip thread writes the TCP and tx ones (callbacks and linkoutput run there or
 * under the core lock); the main thread writes the rx ones. Read at exit under the core lock. */
static struct {
    uint64_t accepted;       /* connections accepted */
    uint64_t closed;         /* closed by us after the client's FIN and the echo were queued */
    uint64_t errored;        /* ended by lwIP's err callback (reset, abort, retransmit limit) */
    uint64_t accept_refused; /* accept failed for lack of memory */
    uint64_t echoed_bytes;   /* bytes queued back with tcp_write */
    uint64_t rx_frames;      /* frames read from the TAP */
    uint64_t rx_ignored;     /* frames neither IPv4 nor ARP, not handed to lwIP */
    uint64_t rx_dropped;     /* frames lwIP had no memory or mailbox slot for */
    uint64_t rx_mbox_waits;  /* times a frame waited for a free mailbox slot */
    uint64_t tx_frames;      /* frames written to the TAP */
    uint64_t tx_errors;      /* frames the TAP write refused or truncated */
} counters;

/* One accepted connection. Bytes move from `pending` to lwIP's send queue as tcp_sndbuf allows;
 * the receive window is reopened (tcp_recved) only for bytes queued, so a slow reader throttles
 * its own sender instead of growing this queue. */
struct echo_conn {
    struct tcp_pcb *pcb;
    struct pbuf *pending;  /* received, not yet queued for sending */
    u16_t pending_offset;  /* bytes of pending's first pbuf already queued */
    bool peer_closed;      /* the client's FIN arrived: close once pending is empty */
};

static void conn_free(struct echo_conn *conn)
{
    if (conn->pending != NULL) {
        pbuf_free(conn->pending);
    }
    free(conn);
}

static err_t on_recv(void *arg, struct tcp_pcb *pcb, struct pbuf *p, err_t err);
static err_t on_sent(void *arg, struct tcp_pcb *pcb, u16_t len);
static err_t on_poll(void *arg, struct tcp_pcb *pcb);
static void on_err(void *arg, err_t err);

/* conn NULL detaches: lwIP then calls nothing of ours for this pcb. */
static void conn_attach(struct tcp_pcb *pcb, struct echo_conn *conn)
{
    tcp_arg(pcb, conn);
    tcp_recv(pcb, conn ? on_recv : NULL);
    tcp_sent(pcb, conn ? on_sent : NULL);
    tcp_err(pcb, conn ? on_err : NULL);
    tcp_poll(pcb, conn ? on_poll : NULL, 2); /* every 2 coarse ticks = 1 s: retries ERR_MEM */
}

/* Queues as much of `pending` as lwIP's send buffer takes, reopens the window by as much,
 * and pushes it out. Called on receive, on every ACK (sent) and from the poll timer. */
static void conn_flush(struct echo_conn *conn)
{
    struct tcp_pcb *pcb = conn->pcb;
    u32_t queued = 0;

    while (conn->pending != NULL) {
        struct pbuf *head = conn->pending;
        u16_t left = (u16_t)(head->len - conn->pending_offset);
        u16_t room = tcp_sndbuf(pcb);
        if (room == 0 || tcp_sndqueuelen(pcb) >= TCP_SND_QUEUELEN) {
            break;
        }
        u16_t chunk = left < room ? left : room;
        if (chunk > 0) {
            err_t err = tcp_write(pcb, (const u8_t *)head->payload + conn->pending_offset, chunk,
                                  TCP_WRITE_FLAG_COPY);
            if (err != ERR_OK) {
                break; /* ERR_MEM: retried from sent or poll */
            }
            queued += chunk;
            conn->pending_offset = (u16_t)(conn->pending_offset + chunk);
        }
        if (conn->pending_offset == head->len) {
            /* Detach the first pbuf: keep the rest alive across freeing the head. */
            struct pbuf *rest = head->next;
            if (rest != NULL) {
                pbuf_ref(rest);
            }
            pbuf_free(head);
            conn->pending = rest;
            conn->pending_offset = 0;
        }
    }

    if (queued > 0) {
        counters.echoed_bytes += queued;
        while (queued > 0) {
            u16_t step = queued > 0xffff ? 0xffff : (u16_t)queued;
            tcp_recved(pcb, step);
            queued -= step;
        }
        tcp_output(pcb);
    }
}

/* After the client's FIN, close once everything received is queued; lwIP sends the FIN behind
 * the queued echo. (tcp_close with un-reopened window would send an RST instead.) */
static void conn_close_if_done(struct echo_conn *conn)
{
    if (!conn->peer_closed || conn->pending != NULL) {
        return;
    }
    struct tcp_pcb *pcb = conn->pcb;
    /* Detach first: a successful tcp_close may free the pcb at once. */
    conn_attach(pcb, NULL);
    if (tcp_close(pcb) != ERR_OK) {
        conn_attach(pcb, conn); /* out of memory for the FIN: retry from the poll timer */
        return;
    }
    counters.closed++;
    conn_free(conn);
}

static err_t on_recv(void *arg, struct tcp_pcb *pcb, struct pbuf *p, err_t err)
{
    struct echo_conn *conn = arg;
    (void)pcb;
    if (conn == NULL) {
        /* Closing, callbacks detached: lwIP should not get here; drop what came. */
        if (p != NULL) {
            pbuf_free(p);
        }
        return ERR_OK;
    }
    if (err != ERR_OK) {
        if (p != NULL) {
            pbuf_free(p);
        }
        return ERR_OK;
    }
    if (p == NULL) {
        conn->peer_closed = true;
    } else if (conn->pending == NULL) {
        conn->pending = p;
        conn->pending_offset = 0;
    } else {
        pbuf_cat(conn->pending, p);
    }
    conn_flush(conn);
    conn_close_if_done(conn);
    return ERR_OK;
}

static err_t on_sent(void *arg, struct tcp_pcb *pcb, u16_t len)
{
    struct echo_conn *conn = arg;
    (void)pcb;
    (void)len;
    if (conn != NULL) {
        conn_flush(conn);
        conn_close_if_done(conn);
    }
    return ERR_OK;
}

static err_t on_poll(void *arg, struct tcp_pcb *pcb)
{
    struct echo_conn *conn = arg;
    (void)pcb;
    if (conn != NULL) {
        conn_flush(conn);
        conn_close_if_done(conn);
    }
    return ERR_OK;
}

/* lwIP has already freed the pcb when this runs. */
static void on_err(void *arg, err_t err)
{
    struct echo_conn *conn = arg;
    (void)err;
    if (conn != NULL) {
        counters.errored++;
        conn_free(conn);
    }
}

static err_t on_accept(void *arg, struct tcp_pcb *pcb, err_t err)
{
    (void)arg;
    if (err != ERR_OK || pcb == NULL) {
        counters.accept_refused++;
        return ERR_VAL;
    }
    struct echo_conn *conn = calloc(1, sizeof *conn);
    if (conn == NULL) {
        counters.accept_refused++;
        return ERR_MEM; /* lwIP aborts the new pcb */
    }
    conn->pcb = pcb;
    counters.accepted++;
    /* An echo answers at once; Nagle would hold small echoes for an ACK (as in smolecho). */
    tcp_nagle_disable(pcb);
    conn_attach(pcb, conn);
    return ERR_OK;
}

/* --- the TAP netif ------------------------------------------------------------------------ */

static err_t tap_linkoutput(struct netif *netif, struct pbuf *p)
{
    (void)netif;
    ssize_t written;
    if (p->len == p->tot_len) {
        /* One pbuf (the usual case: LWIP_NETIF_TX_SINGLE_PBUF): write it in place. */
        written = write(tap_fd, p->payload, p->len);
    } else {
        u8_t frame[FRAME_MAX];
        if (p->tot_len > sizeof frame) {
            counters.tx_errors++;
            return ERR_IF;
        }
        u16_t len = pbuf_copy_partial(p, frame, p->tot_len, 0);
        written = write(tap_fd, frame, len);
    }
    if (written != (ssize_t)p->tot_len) {
        counters.tx_errors++; /* a lost frame, as on a wire: TCP retransmits */
    } else {
        counters.tx_frames++;
    }
    return ERR_OK;
}

static err_t tap_netif_init(struct netif *netif)
{
    netif->name[0] = 't';
    netif->name[1] = 'p';
    netif->output = etharp_output;
#if LWIP_IPV6
    netif->output_ip6 = ethip6_output; /* no IPv6 address is configured; set so nothing is NULL */
#endif
    netif->linkoutput = tap_linkoutput;
    netif->mtu = 1500;
    netif->hwaddr_len = ETH_HWADDR_LEN;
    memcpy(netif->hwaddr, tap_mac, ETH_HWADDR_LEN);
    netif->flags = NETIF_FLAG_BROADCAST | NETIF_FLAG_ETHARP | NETIF_FLAG_ETHERNET;
    return ERR_OK;
}

/* Attaches to an existing, persistent TAP (made by `ip tuntap add`). TUNSETIFF on a free name
 * would create a new device instead, so that is refused before and checked after. */
static int tap_open(const char *name)
{
    if (if_nametoindex(name) == 0) {
        fprintf(stderr, "lwip_echo: no interface %s (create it first: ip tuntap add dev %s mode tap)\n",
                name, name);
        return -1;
    }
    int fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) {
        fprintf(stderr, "lwip_echo: /dev/net/tun: %s\n", strerror(errno));
        return -1;
    }
    struct ifreq ifr;
    memset(&ifr, 0, sizeof ifr);
    ifr.ifr_flags = IFF_TAP | IFF_NO_PI;
    snprintf(ifr.ifr_name, sizeof ifr.ifr_name, "%s", name);
    if (ioctl(fd, TUNSETIFF, &ifr) < 0) {
        fprintf(stderr, "lwip_echo: attach to TAP %s: %s\n", name, strerror(errno));
        close(fd);
        return -1;
    }
    if (ioctl(fd, TUNGETIFF, &ifr) < 0 || !(ifr.ifr_flags & IFF_PERSIST)) {
        fprintf(stderr, "lwip_echo: %s is not a persistent TAP made by ip tuntap\n", name);
        close(fd); /* a device made just now by TUNSETIFF goes away with the descriptor */
        return -1;
    }
    return fd;
}

/* Gives one frame to lwIP; false if lwIP refused it (the caller still owns p). With the
 * mailbox, a full mailbox is waited out (bounded) rather than dropping the frame: the tcpip
 * thread is only behind, and a drop here would be loss the link never made. Waiting pushes the
 * backlog into the TAP's queue, and frames keep their order. */
static bool hand_to_lwip(struct pbuf *p, bool locked)
{
    if (locked) {
        return tap_netif.input(p, &tap_netif) == ERR_OK;
    }
    for (int attempt = 0; attempt < MBOX_FULL_RETRIES; attempt++) {
        err_t err = tap_netif.input(p, &tap_netif);
        if (err == ERR_OK) {
            return true;
        }
        if (err != ERR_MEM) {
            return false;
        }
        counters.rx_mbox_waits++;
        usleep(MBOX_FULL_WAIT_US);
    }
    return false;
}

/* Reads up to READ_BATCH frames and hands each to lwIP. `locked` (the default): run lwIP's
 * input here under the core lock, one thread doing all of lwIP's work; faster than the
 * mailbox on a saturated machine (README.md), as a frame then costs no thread wake-up.
 * `mbox`: post each frame to the tcpip thread's mailbox (tcpip_input); the unix port's
 * mailbox holds 128 messages. */
static void tap_read_batch(bool locked)
{
    u8_t frame[FRAME_MAX];
    if (locked) {
        LOCK_TCPIP_CORE();
    }
    for (int i = 0; i < READ_BATCH; i++) {
        ssize_t n = read(tap_fd, frame, sizeof frame);
        if (n <= 0) {
            break; /* EAGAIN: drained */
        }
        counters.rx_frames++;
        if (n < 14 || !(frame[12] == 0x08 && (frame[13] == 0x00 || frame[13] == 0x06))) {
            /* Only IPv4 and ARP are served. lwIP 2.1.3's ip6_input reads header fields of a
             * runt IPv6 packet beyond its end (valgrind, with malformed frames). */
            counters.rx_ignored++;
            continue;
        }
        if (n < ETH_MIN_FRAME) {
            /* Pad runts as Ethernet does: lwIP reads IPv4 and ARP header fields before it
             * checks the length, and IPv4 trims the padding by its own length field. */
            memset(frame + n, 0, (size_t)(ETH_MIN_FRAME - n));
            n = ETH_MIN_FRAME;
        }
        /* PBUF_RAM, not PBUF_POOL: Debian's liblwip sizes its pool elements for 592-byte
         * payloads (616-byte blocks, as if TCP_MSS were 536) while pbuf_alloc fills them up to
         * PBUF_POOL_BUFSIZE (1536), so a full-size frame overflows the heap block. That is
         * the tapif overflow; a PBUF_RAM pbuf is allocated at the frame's exact size. */
        struct pbuf *p = pbuf_alloc(PBUF_RAW, (u16_t)n, PBUF_RAM);
        if (p == NULL) {
            counters.rx_dropped++;
            continue;
        }
        pbuf_take(p, frame, (u16_t)n);
        if (!hand_to_lwip(p, locked)) {
            pbuf_free(p);
            counters.rx_dropped++;
        }
    }
    if (locked) {
        UNLOCK_TCPIP_CORE();
    }
}

/* --- command line -------------------------------------------------------------------------- */

static void usage(const char *why)
{
    fprintf(stderr,
            "lwip_echo: %s\n"
            "usage: lwip_echo --tap NAME --ip A.B.C.D --prefix N --gw A.B.C.E --port P"
            " [--input locked|mbox]\n",
            why);
    exit(2);
}

static long parse_number(const char *text, long lo, long hi, const char *what)
{
    char *end;
    errno = 0;
    long value = strtol(text, &end, 10);
    if (errno != 0 || end == text || *end != '\0' || value < lo || value > hi) {
        char why[96];
        snprintf(why, sizeof why, "bad %s: %s", what, text);
        usage(why);
    }
    return value;
}

/* Strict dotted quad: lwIP's ip4addr_aton, like inet_aton, also takes "1.2.3" or hex. */
static bool dotted_quad(const char *text, u32_t *host_order)
{
    u32_t value = 0;
    for (int part = 0; part < 4; part++) {
        if (part > 0 && *text++ != '.') {
            return false;
        }
        unsigned octet = 0;
        int digits = 0;
        while (*text >= '0' && *text <= '9' && digits < 3) {
            octet = octet * 10 + (unsigned)(*text++ - '0');
            digits++;
        }
        if (digits == 0 || octet > 255) {
            return false;
        }
        value = (value << 8) | octet;
    }
    *host_order = value;
    return *text == '\0';
}

static void parse_ip4(const char *text, ip4_addr_t *out, const char *what)
{
    u32_t host_order;
    if (dotted_quad(text, &host_order)) {
        ip4_addr_set_u32(out, lwip_htonl(host_order));
    } else {
        char why[96];
        snprintf(why, sizeof why, "bad %s address: %s", what, text);
        usage(why);
    }
}

static void tcpip_ready(void *arg)
{
    sys_sem_signal((sys_sem_t *)arg);
}

int main(int argc, char **argv)
{
    const char *tap_name = NULL;
    ip4_addr_t ip, gw, mask;
    bool have_ip = false, have_gw = false;
    long prefix = -1, port = -1;
    bool locked_input = true;

    for (int i = 1; i < argc; i++) {
        const char *opt = argv[i];
        if (i + 1 >= argc) {
            char why[96];
            snprintf(why, sizeof why, "%s needs a value", opt);
            usage(why);
        }
        const char *val = argv[++i];
        if (strcmp(opt, "--tap") == 0) {
            if (strlen(val) == 0 || strlen(val) >= IFNAMSIZ) {
                usage("bad TAP name");
            }
            tap_name = val;
        } else if (strcmp(opt, "--ip") == 0) {
            parse_ip4(val, &ip, "--ip");
            have_ip = true;
        } else if (strcmp(opt, "--gw") == 0) {
            parse_ip4(val, &gw, "--gw");
            have_gw = true;
        } else if (strcmp(opt, "--prefix") == 0) {
            prefix = parse_number(val, 0, 32, "--prefix");
        } else if (strcmp(opt, "--port") == 0) {
            port = parse_number(val, 1, 65535, "--port");
        } else if (strcmp(opt, "--input") == 0) {
            if (strcmp(val, "locked") == 0) {
                locked_input = true;
            } else if (strcmp(val, "mbox") == 0) {
                locked_input = false;
            } else {
                usage("--input is locked or mbox");
            }
        } else {
            char why[96];
            snprintf(why, sizeof why, "unknown option %s", opt);
            usage(why);
        }
    }
    if (tap_name == NULL || !have_ip || !have_gw || prefix < 0 || port < 0) {
        usage("--tap, --ip, --prefix, --gw and --port are required");
    }
    u32_t host_mask = prefix == 0 ? 0 : 0xffffffffu << (32 - prefix);
    ip4_addr_set_u32(&mask, lwip_htonl(host_mask));

    /* Block the stop signals before lwIP starts its thread, so it inherits the mask and they
     * reach only the signalfd polled below. */
    sigset_t stop_signals;
    sigemptyset(&stop_signals);
    sigaddset(&stop_signals, SIGINT);
    sigaddset(&stop_signals, SIGTERM);
    if (pthread_sigmask(SIG_BLOCK, &stop_signals, NULL) != 0) {
        perror("lwip_echo: sigmask");
        return 1;
    }
    int signal_fd = signalfd(-1, &stop_signals, SFD_CLOEXEC);
    if (signal_fd < 0) {
        perror("lwip_echo: signalfd");
        return 1;
    }

    tap_fd = tap_open(tap_name);
    if (tap_fd < 0) {
        return 1;
    }

    sys_sem_t started;
    if (sys_sem_new(&started, 0) != ERR_OK) {
        fprintf(stderr, "lwip_echo: semaphore\n");
        return 1;
    }
    tcpip_init(tcpip_ready, &started);
    sys_sem_wait(&started);
    sys_sem_free(&started);

    LOCK_TCPIP_CORE();
    netif_input_fn input = locked_input ? ethernet_input : tcpip_input;
    if (netif_add(&tap_netif, &ip, &mask, &gw, NULL, tap_netif_init, input) == NULL) {
        UNLOCK_TCPIP_CORE();
        fprintf(stderr, "lwip_echo: netif_add failed\n");
        return 1;
    }
    netif_set_default(&tap_netif);
    netif_set_up(&tap_netif);
    netif_set_link_up(&tap_netif);

    struct tcp_pcb *listener = tcp_new();
    err_t bound = listener == NULL ? ERR_MEM : tcp_bind(listener, IP4_ADDR_ANY, (u16_t)port);
    if (bound != ERR_OK) {
        UNLOCK_TCPIP_CORE();
        fprintf(stderr, "lwip_echo: bind port %ld: lwIP error %d\n", port, (int)bound);
        return 1;
    }
    listener = tcp_listen(listener);
    if (listener == NULL) {
        UNLOCK_TCPIP_CORE();
        fprintf(stderr, "lwip_echo: listen failed\n");
        return 1;
    }
    tcp_accept(listener, on_accept);
    UNLOCK_TCPIP_CORE();

    printf("lwip_echo: lwIP %s NO_SYS=%d TCP_MSS=%d TCP_WND=%d (LWIP_WND_SCALE=%d TCP_RCV_SCALE=%d)"
           " TCP_SND_BUF=%d TCP_SND_QUEUELEN=%d MEMP_NUM_TCP_PCB=%d MEMP_MEM_MALLOC=%d"
           " TCP_QUEUE_OOSEQ=%d LWIP_TCP_SACK_OUT=%d input=%s\n",
           LWIP_VERSION_STRING, NO_SYS, TCP_MSS, (int)TCP_WND, LWIP_WND_SCALE, TCP_RCV_SCALE,
           (int)TCP_SND_BUF, (int)TCP_SND_QUEUELEN, MEMP_NUM_TCP_PCB, MEMP_MEM_MALLOC,
           TCP_QUEUE_OOSEQ, LWIP_TCP_SACK_OUT, locked_input ? "locked" : "mbox");
    printf("lwip_echo: ready on %s:%ld via %s\n", ip4addr_ntoa(&ip), port, tap_name);
    fflush(stdout);

    struct pollfd fds[2] = {
        {.fd = tap_fd, .events = POLLIN},
        {.fd = signal_fd, .events = POLLIN},
    };
    for (;;) {
        int ready = poll(fds, 2, -1);
        if (ready < 0) {
            if (errno == EINTR) {
                continue;
            }
            perror("lwip_echo: poll");
            return 1;
        }
        if (fds[1].revents & POLLIN) {
            break;
        }
        if (fds[0].revents & (POLLERR | POLLHUP | POLLNVAL)) {
            fprintf(stderr, "lwip_echo: TAP %s went away\n", tap_name);
            return 1;
        }
        if (fds[0].revents & POLLIN) {
            tap_read_batch(locked_input);
        }
    }

    LOCK_TCPIP_CORE();
    printf("lwip_echo: stopped: accepted %" PRIu64 " closed %" PRIu64 " errored %" PRIu64
           " accept_refused %" PRIu64 " echoed_bytes %" PRIu64 " rx_frames %" PRIu64
           " rx_ignored %" PRIu64 " rx_dropped %" PRIu64 " rx_mbox_waits %" PRIu64 " tx_frames %" PRIu64
           " tx_errors %" PRIu64 "\n",
           counters.accepted, counters.closed, counters.errored, counters.accept_refused,
           counters.echoed_bytes, counters.rx_frames, counters.rx_ignored, counters.rx_dropped, counters.rx_mbox_waits,
           counters.tx_frames, counters.tx_errors);
    fflush(stdout);
    UNLOCK_TCPIP_CORE();
    /* The tcpip thread is still running; leave without tearing lwIP down. */
    _exit(0);
}
