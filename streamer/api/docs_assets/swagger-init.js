// Starts Swagger UI on the spec beside the page (relative: it works under any root path).
// validatorUrl null: Swagger UI would otherwise send the spec to an online validator.
window.ui = SwaggerUIBundle({
  url: "openapi.json",
  dom_id: "#swagger-ui",
  deepLinking: true,
  validatorUrl: null,
  presets: [SwaggerUIBundle.presets.apis, SwaggerUIBundle.SwaggerUIStandalonePreset],
  layout: "BaseLayout",
});
