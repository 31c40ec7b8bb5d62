// The race check of the cpu kernel family (./check.ts).
import { raceCheck } from "./check.ts";

raceCheck("cpu");
