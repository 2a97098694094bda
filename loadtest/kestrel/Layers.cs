// Layers - the work of hotpath's default chain, written once for every mode:
//
//   server_headers -> request_id -> metrics -> handler
//
// The chains (TaskChain.cs, ValueTaskChain.cs) are only the async shells
// around these steps, so the modes differ in exactly one thing: the type
// each layer returns its result in. A step that runs after the downstream
// returned may still set headers, because the answer is written only when
// the whole chain has returned (Answer.cs). Date is Kestrel's own header,
// formatted once a second like hotpath's worker tick, so server_headers
// adds only Server.
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Primitives;

namespace HotpathKestrel;

public static class Layers
{
    public const string ServerName = "hotpath-kestrel";
    public const string RequestIdHeader = "X-Request-Id";
    public const string CacheHeader = "X-Cache";

    private static readonly uint BootId = (uint)Random.Shared.Next() ^ (uint)Environment.ProcessId;
    private static long s_seq;

    /// <summary>server_headers, after its downstream: Server.</summary>
    public static void ServerHeaders(HttpContext c) => c.Response.Headers.Server = ServerName;

    /// <summary>request_id, before: the client's X-Request-Id when it sent one
    /// well-formed value (hotpath's parser's rule), else a new one: boot id,
    /// worker (0: the twin is one process), request number, in hex, as
    /// hotpath's. A new id is a string: the one allocation every mode makes
    /// per request (hotpath's comes from its request arena).</summary>
    public static string RequestId(HttpContext c)
    {
        StringValues v = c.Request.Headers[RequestIdHeader];
        if (v.Count == 1 && IsValidId(v[0])) return v[0]!;
        long seq = Interlocked.Increment(ref s_seq);
        return string.Create(null, stackalloc char[32], $"{BootId:x8}-0-{seq:x}");
    }

    /// <summary>request_id, after its downstream: the header.</summary>
    public static void SetRequestId(HttpContext c, string id) => c.Response.Headers[RequestIdHeader] = id;

    /// <summary>The cache handler's X-Cache (static strings: no allocation).</summary>
    public static void SetCacheOutcome(HttpContext c, CacheOutcome how) =>
        c.Response.Headers[CacheHeader] = Cache.Name(how);

    private static bool IsValidId(string? s)
    {
        if (string.IsNullOrEmpty(s)) return false;
        foreach (char ch in s)
        {
            bool ok = char.IsAsciiLetterOrDigit(ch) || ch is '-' or '_' or '.' or ':' or '/' or '+' or '=';
            if (!ok) return false;
        }
        return true;
    }
}
