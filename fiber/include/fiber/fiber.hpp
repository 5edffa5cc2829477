// Everything in fiber.
#pragma once

#include "fiber/context.hpp"
#include "fiber/error.hpp"
#include "fiber/generator.hpp"
#include "fiber/stack.hpp"
