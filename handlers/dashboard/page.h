/*
 * page.h - the /dashboard page, generated at build time: index.html with
 * app.js, style.css and uPlot's script and style inlined, as bytes
 * (embed.mjs writes the definitions into $(BUILD)/gen/dashboard_page.c).
 * Read-only, static: handlers/dashboard.c answers with it as it is.
 */
#ifndef HP_DASHBOARD_PAGE_H
#define HP_DASHBOARD_PAGE_H

#include <stddef.h>

extern const unsigned char hp_dashboard_page[];
extern const size_t hp_dashboard_page_len;

#endif
