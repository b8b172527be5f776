import { createApp } from "vue";
import App from "./App.vue";
import { api } from "./api/client";
import { createAppRouter } from "./router";
import { forgetSession } from "./session";
import "./styles.css";

const router = createAppRouter();
api.onUnauthorized = () => {
  forgetSession();
  const here = router.currentRoute.value;
  if (!here.meta.isPublic) void router.push({ name: "signin", query: { next: here.fullPath } });
};
createApp(App).use(router).mount("#app");
