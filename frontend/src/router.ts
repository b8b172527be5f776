import {
  createRouter,
  createWebHistory,
  type RouteLocationNormalized,
  type RouteLocationNormalizedLoaded,
  type RouteRecordRaw,
} from "vue-router";
import { loadSession } from "./session";

declare module "vue-router" {
  interface RouteMeta {
    title?: string;
    isPublic?: boolean;
    isGuestOnly?: boolean;
    isOperatorOnly?: boolean;
  }
}

const routes: RouteRecordRaw[] = [
  { path: "/", redirect: { name: "videos" } },
  { path: "/signin", name: "signin", component: () => import("./pages/SignInPage.vue"), meta: { title: "Sign in", isPublic: true, isGuestOnly: true } },
  { path: "/signup", name: "signup", component: () => import("./pages/SignUpPage.vue"), meta: { title: "Sign up", isPublic: true, isGuestOnly: true } },
  { path: "/new", name: "new", component: () => import("./pages/NewVideoPage.vue"), meta: { title: "New video" } },
  { path: "/videos", name: "videos", component: () => import("./pages/MyVideosPage.vue"), meta: { title: "My videos" } },
  { path: "/videos/:id", name: "job", component: () => import("./pages/JobDetailPage.vue"), props: true, meta: { title: "Video" } },
  { path: "/ops", name: "ops", component: () => import("./pages/OperationsPage.vue"), meta: { title: "Operations", isOperatorOnly: true } },
  { path: "/forbidden", name: "forbidden", component: () => import("./pages/ForbiddenPage.vue"), meta: { title: "Operators only" } },
  { path: "/unavailable", name: "unavailable", component: () => import("./pages/UnavailablePage.vue"), meta: { title: "Unavailable", isPublic: true } },
  { path: "/:rest(.*)*", name: "notfound", component: () => import("./pages/NotFoundPage.vue"), meta: { title: "Not found", isPublic: true } },
];

/** Return the in-app path in ``?next=`` (never another site), or ``fallback``. */
export function nextPath(route: RouteLocationNormalizedLoaded, fallback: string): string {
  const next = route.query.next;
  return typeof next === "string" && next.startsWith("/") && !next.startsWith("//") ? next : fallback;
}

/** Decide where a navigation may go, given who is signed in. */
export async function guard(to: RouteLocationNormalized) {
  let user;
  try {
    user = await loadSession();
  } catch {
    return to.name === "unavailable" ? true : { name: "unavailable", query: { next: to.fullPath } };
  }
  if (!user && !to.meta.isPublic) return { name: "signin", query: { next: to.fullPath } };
  if (user && to.meta.isGuestOnly) return { name: "videos" };
  if (to.meta.isOperatorOnly && user?.role !== "operator") return { name: "forbidden" };
  return true;
}

export function createAppRouter() {
  const router = createRouter({ history: createWebHistory(), routes });
  router.beforeEach(guard);
  router.afterEach((to) => {
    document.title = to.meta.title ? `${to.meta.title} · clipyard` : "clipyard";
  });
  return router;
}
