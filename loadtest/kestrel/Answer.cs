// Answer - the result every layer of the chain returns, and its writer.
//
// hotpath's layers build the answer and the server writes it once the chain
// has returned; the twin does the same (as minimal APIs' endpoint filters
// return a result that is executed after them): a layer may still add a
// header after its downstream returned, because nothing is written until
// Write. It is a class, so Task<Answer> is never one of the runtime's cached
// tasks (those hold null, or a few bool/int values): task mode pays a
// Task<Answer> per layer, which is the cost being measured. The fixed
// answers are static instances: no request allocates one.
using System.Buffers;
using System.Text.Json;
using System.Text.Json.Serialization;
using Microsoft.AspNetCore.Http;

namespace HotpathKestrel;

public class Answer(int status, string contentType, byte[] body)
{
    public int Status { get; } = status;
    public string ContentType { get; } = contentType;
    public byte[] Body { get; } = body;

    /// <summary>Status, Content-Type, Content-Length, then the body (not for HEAD).
    /// Synchronous: the body goes into Kestrel's output pipe, flushed when the
    /// request ends.</summary>
    public virtual void Write(HttpContext c) => WriteBytes(c, Status, ContentType, Body);

    protected static void WriteBytes(HttpContext c, int status, string contentType, ReadOnlySpan<byte> body)
    {
        HttpResponse r = c.Response;
        r.StatusCode = status;
        r.ContentType = contentType;
        r.ContentLength = body.Length;
        if (!HttpMethods.IsHead(c.Request.Method)) r.BodyWriter.Write(body);
    }

    public static Answer Text(int status, string text) =>
        new(status, "text/plain", System.Text.Encoding.ASCII.GetBytes(text));

    // The fixed answers, with hotpath's bodies byte for byte.
    public static readonly Answer Plaintext = Text(200, "Hello, World!");
    public static readonly Answer NotFound = Text(404, "not found\n");
    public static readonly Answer BadKey =
        Text(400, "expected /cache/{key}: one path segment of 1..256 bytes, not . or ..\n");
    public static readonly Answer UpstreamFailed = Text(502, "upstream failed\n");
    public static readonly Answer UpstreamTimedOut = Text(504, "upstream timed out\n");
    public static readonly Answer ShuttingDown = Text(503, "shutting down\n");
    public static readonly Answer MethodNotAllowed = new NotAllowed();
    public static readonly Answer Json = new JsonHello();

    private sealed class NotAllowed() : Answer(405, "text/plain", "method not allowed\n"u8.ToArray())
    {
        public override void Write(HttpContext c)
        {
            c.Response.Headers.Allow = "GET, HEAD";
            base.Write(c);
        }
    }

    /// <summary>GET /json: {"message":"Hello, World!"}, serialized per request with
    /// System.Text.Json (source-generated metadata, no reflection), as
    /// TechEmpower's json test requires. The writer and its buffer are the
    /// thread's own and reused, so serializing allocates nothing.</summary>
    private sealed class JsonHello() : Answer(200, "application/json", [])
    {
        [ThreadStatic] private static ArrayBufferWriter<byte>? t_buffer;
        [ThreadStatic] private static Utf8JsonWriter? t_writer;

        public override void Write(HttpContext c)
        {
            ArrayBufferWriter<byte> buf = t_buffer ??= new ArrayBufferWriter<byte>(256);
            buf.ResetWrittenCount();
            Utf8JsonWriter w = t_writer ??= new Utf8JsonWriter(buf);
            w.Reset(buf);
            JsonSerializer.Serialize(w, new JsonMessage("Hello, World!"), TwinJsonContext.Default.JsonMessage);
            WriteBytes(c, Status, ContentType, buf.WrittenSpan);
        }
    }
}

public readonly record struct JsonMessage([property: JsonPropertyName("message")] string Message);

[JsonSerializable(typeof(JsonMessage))]
internal sealed partial class TwinJsonContext : JsonSerializerContext;
