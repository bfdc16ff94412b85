/* weft_strerror: every code a weft call can return. */
#include <errno.h>
#include <netdb.h>
#include <string.h>
#include <weft/common.h>
#include <weft/runtime.h>

const char *weft_strerror(int err)
{
    switch (err) {
    case 0:
        return "success";
    case WEFT_EPANIC:
        return "task panicked";
    case WEFT_EHANDLE:
        return "task handle already joined or detached";
    case -ETIMEDOUT:
        /* Mostly a task's deadline; the kernel's own timeouts (a TCP
         * connect or keepalive) say it too. */
        return "timed out (a deadline passed, or the kernel's own timeout)";
    case -ECANCELED:
        return "operation cancelled";
    case -ESHUTDOWN:
        /* The C library's text speaks only of a socket's send side; in weft
         * it is also how a stopped stream ends. */
        return "shut down (a stopped stream has ended, or a send after shutdown)";
    }
    if (WEFT_IS_EAI(err)) {
        /* weft_getaddrinfo's codes; gai_strerror returns static text. */
        return gai_strerror(WEFT_EAI_CODE(err));
    }
    if (err < 0 && err > -4000) {
        /* strerrordesc_np is static, thread-safe and never NULL for known
         * codes (glibc 2.32). */
        const char *s = strerrordesc_np(-err);
        if (s)
            return s;
    }
    return "unknown error";
}
