// Swagger UI over brisk's own document. "Try it out" sends requests to this
// server; with API keys set, the Authorize button takes a key (bearer).
window.ui = SwaggerUIBundle({
  url: "/openapi.json",
  dom_id: "#swagger-ui",
  deepLinking: true,
  tryItOutEnabled: false,
  persistAuthorization: true,
});
